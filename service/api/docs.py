"""`/docs` (Swagger UI) and `/redoc` served from assets the service ships.

The bundles come from the ``fastapi-offline`` package (no CDN: the service's own
``default-src 'self'`` policy would block one, and it may be unreachable). The pages
carry no inline script: each loads a small start-up script from ``/docs/assets``.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse

from service.api.middleware import SECURITY_HEADERS

__all__ = ["router"]

_BUNDLES = Path(fastapi_offline.__file__).parent / "static"
_OWN = Path(__file__).parent / "docs_static"
_ASSETS = {
    "swagger-ui-bundle.js": (_BUNDLES, "text/javascript"),
    "swagger-ui.css": (_BUNDLES, "text/css"),
    "redoc.standalone.js": (_BUNDLES, "text/javascript"),
    "favicon.png": (_BUNDLES, "image/png"),
    "swagger-init.js": (_OWN, "text/javascript"),
    "redoc-init.js": (_OWN, "text/javascript"),
}

router = APIRouter(include_in_schema=False)

_SWAGGER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pprl API · Swagger UI</title>
<link rel="icon" href="/docs/assets/favicon.png">
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/swagger-init.js"></script></body></html>
"""

_REDOC = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pprl API · ReDoc</title>
<link rel="icon" href="/docs/assets/favicon.png"></head>
<body><div id="redoc"></div>
<script src="/docs/assets/redoc.standalone.js"></script>
<script src="/docs/assets/redoc-init.js"></script></body></html>
"""


@router.get("/docs", response_class=HTMLResponse)
def swagger_ui() -> HTMLResponse:
    """The interactive API reference (Swagger UI), from bundled assets."""
    return HTMLResponse(_SWAGGER)


# ReDoc's styled-components injects <style> elements: this page alone also allows inline
# styles (scripts stay same-origin only, and the page shows nothing but the OpenAPI document)
REDOC_CSP = (
    SECURITY_HEADERS["Content-Security-Policy"]
    + "; style-src 'self' 'unsafe-inline'; img-src 'self' data:; worker-src 'self' blob:"
)


@router.get("/redoc", response_class=HTMLResponse)
def redoc() -> HTMLResponse:
    """The API reference as one page (ReDoc), from bundled assets."""
    return HTMLResponse(_REDOC, headers={"Content-Security-Policy": REDOC_CSP})


@router.get("/docs/assets/{name}")
def asset(name: str) -> FileResponse:
    """One of the bundled documentation assets (a fixed list: no path is built from input)."""
    if name not in _ASSETS:
        raise HTTPException(404, "no such asset")
    folder, media_type = _ASSETS[name]
    return FileResponse(folder / name, media_type=media_type)
