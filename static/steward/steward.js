// Steward's only script: draws plotly figures and asks before destructive steps.
// No inline script anywhere: the Content-Security-Policy forbids it.
(function () {
  "use strict";

  function drawFigures(root) {
    if (typeof window.Plotly === "undefined") return;
    root.querySelectorAll("[data-figure]").forEach(function (el) {
      if (el.dataset.drawn) return;
      var source = document.getElementById(el.dataset.figure);
      if (!source) return;
      // The figure is a JSON document carried as a JSON string by json_script (which escapes it).
      var figure = JSON.parse(JSON.parse(source.textContent));
      window.Plotly.newPlot(el, figure.data, figure.layout, { responsive: true, displaylogo: false });
      el.dataset.drawn = "1";
    });
  }

  function loadPlotly(then) {
    if (window.Plotly || !document.querySelector("[data-figure]")) return then();
    var script = document.createElement("script");
    script.src = document.body.dataset.plotlySrc || "/static/plotly/plotly.min.js";
    script.onload = then;
    document.head.appendChild(script);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-confirm]");
    if (button && !window.confirm(button.dataset.confirm)) {
      event.preventDefault();
      event.stopPropagation();
    }
  }, true);

  // A search box over a long select: options that do not contain every typed word are hidden, and
  // the selection moves to the first match. Without this script the select works as it is.
  function filterSelect(input) {
    var select = document.getElementById(input.dataset.filters);
    if (!select) return;
    var words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    var first = null;
    var shown = 0;
    Array.prototype.forEach.call(select.options, function (option) {
      var text = option.text.toLowerCase();
      var match = option.value !== "" && words.every(function (word) { return text.indexOf(word) !== -1; });
      option.hidden = !match && option.value !== "";
      if (match) { shown += 1; if (!first) first = option; }
    });
    if (first && (select.selectedIndex < 0 || select.options[select.selectedIndex].hidden || !select.value)) {
      select.value = first.value;
    }
    var count = document.getElementById("version-count");
    if (count && words.length) count.textContent = shown + " matching version" + (shown === 1 ? "" : "s") + ".";
  }

  function enableSelectFilters(root) {
    root.querySelectorAll("input[data-filters]").forEach(function (input) {
      input.hidden = false;
      var label = root.querySelector("label[for='" + input.id + "']");
      if (label) label.hidden = false;
      input.addEventListener("input", function () { filterSelect(input); });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    loadPlotly(function () { drawFigures(document); });
    enableSelectFilters(document);
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    loadPlotly(function () { drawFigures(event.target); });
    // A panel that opens in place takes the focus (its heading), so keyboard and screen-reader
    // users continue where it appeared rather than on the link that opened it.
    var focus = event.target.querySelector("[data-focus-on-swap]");
    if (focus) focus.focus();
  });
})();
