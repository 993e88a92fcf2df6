"""`/`: where a person arriving at the service goes next."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

_HOME = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pprl</title>
<link rel="stylesheet" href="/analyst/static/style.css"></head>
<body><header><strong>pprl · privacy-preserving record linkage</strong></header>
<main><h1>pprl</h1>
<p>Partners hash and seal their extracts locally; an enclave links them; only
disclosure-controlled aggregates leave.</p>
<ul class="home">
<li><a href="/analyst">Analysts and commissioners</a>: projects, runs and released figures</li>
<li><a href="/dpo">Data protection officers</a>: the audit log, releases and retention</li>
<li><a href="/docs">API reference</a> (Swagger UI) · <a href="/redoc">ReDoc</a> ·
<a href="/openapi.json">OpenAPI document</a></li>
</ul></main></body></html>
"""


@router.get("/", response_class=HTMLResponse)
def home() -> HTMLResponse:
    """Links to the analyst pages, the DPO pages and the API reference."""
    return HTMLResponse(_HOME)
