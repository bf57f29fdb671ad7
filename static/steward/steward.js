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

  document.addEventListener("DOMContentLoaded", function () {
    loadPlotly(function () { drawFigures(document); });
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    loadPlotly(function () { drawFigures(event.target); });
    // A panel that opens in place takes the focus (its heading), so keyboard and screen-reader
    // users continue where it appeared rather than on the link that opened it.
    var focus = event.target.querySelector("[data-focus-on-swap]");
    if (focus) focus.focus();
  });
})();
