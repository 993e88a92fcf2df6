// Start ReDoc on the service's own OpenAPI document (no inline script: strict CSP).
Redoc.init("/openapi.json", { disableSearch: true }, document.getElementById("redoc"));
