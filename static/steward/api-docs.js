// Starts Swagger UI on /api/docs/. A file of its own rather than an inline script, so that the
// site's Content-Security-Policy (script-src 'self') holds on this page too; the page passes the
// schema's address and the CSRF token as data attributes of #swagger-ui.
"use strict";

(function () {
  const root = document.getElementById("swagger-ui");
  const csrfHeader = root.dataset.csrfHeader;
  const csrfToken = root.dataset.csrfToken;

  // "Try it out" with the session: unsafe methods need the CSRF token, as every form does.
  function requestInterceptor(request) {
    if (!["GET", "HEAD", undefined].includes(request.method) && request.credentials === "same-origin") {
      request.headers[csrfHeader] = csrfToken;
    }
    return request;
  }

  window.ui = SwaggerUIBundle({
    url: root.dataset.schemaUrl,
    dom_id: "#swagger-ui",
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    deepLinking: true,
    // No badge from an outside validator: the page loads nothing from other hosts.
    validatorUrl: null,
    requestInterceptor,
  });
})();
