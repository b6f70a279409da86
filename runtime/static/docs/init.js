// Arcana's docs page: Swagger UI on the live document at /openapi.json.
// A script file rather than inline code: the page's Content-Security-Policy allows scripts from this origin only.
(function () {
  "use strict";
  var LOGIN = /\/api\/v1\/auth\/(login|refresh)$/;
  var ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    // No deep links: Swagger UI reads "_" in an operation id (list_notes) as escaped whitespace and logs an error.
    deepLinking: false,
    // The token entered under "Authorize" survives a page reload (kept in this browser's local storage).
    persistAuthorization: true,
    // No online validator badge: the page calls nothing but this server.
    validatorUrl: null,
    // A login tried on this page authorizes the page with the access token it answered.
    responseInterceptor: function (response) {
      var body = response.body || response.obj;
      var path = new URL(response.url, window.location.href).pathname;
      if (response.ok && LOGIN.test(path) && body && typeof body.access_token === "string") {
        ui.preauthorizeApiKey("bearerAuth", body.access_token);
      }
      return response;
    }
  });
  window.ui = ui;
})();
