"""The FastAPI application: routers, security headers, request ids, error mapping."""

from __future__ import annotations

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from service.analyst import router as analyst
from service.api import docs, home, meta, tokens
from service.api.deps import AppState, in_db_slot, record_denial
from service.api.middleware import RequestContext
from service.audit import router as audit
from service.audit.keys import load_audit_public_key
from service.crypto import load_enclave_public_key
from service.db import Database
from service.dpo import router as dpo
from service.errors import ServiceError
from service.logs import log
from service.partner import router as partner
from service.projects import router as projects
from service.runs import router as runs
from service.settings import Settings
from service.submissions import router as submissions

__all__ = ["create_app"]

_THREADPOOL_THREADS = 40
_SECTIONS = ("meta", "tokens", "projects", "submissions", "runs", "audit", "partner page")


def create_app(settings: Settings | None = None, db: Database | None = None) -> FastAPI:
    """Build the app for ``settings`` (read from ``PPRL_*`` when not given)."""
    settings = settings or Settings()
    # no pyarrow, pandas, matplotlib or Splink here: the API stores sealed bytes it cannot
    # open, and the pages that draw charts or build workbooks import theirs when they do
    # (tests/service/test_api_imports.py keeps it so)
    db = db or Database(settings.url)
    app = FastAPI(
        title="pprl",
        version="0.1.0",
        summary="Privacy-preserving record linkage for local public services.",
        docs_url=None,  # served from bundled assets by service.api.docs (no CDN)
        redoc_url=None,
        # the reference's sections in the order of the workflow, not of the routers'
        # inclusion (which puts the read path first, below)
        openapi_tags=[{"name": name} for name in _SECTIONS],
    )
    from service.submissions.service import sweep_incoming

    sweep_incoming(settings)
    # the API holds only the audit public key: checkpoints are signed by the worker's signer
    audit_public_key = load_audit_public_key(settings)
    app.state.pprl = AppState(
        settings=settings,
        db=db,
        enclave_public_key=load_enclave_public_key(settings.enclave_public_key_path),
        audit_public_key=audit_public_key,
        # fewer slots than the threadpool's 40 threads (anyio's default), so the request
        # holding the database can always get the thread it needs to finish
        db_slots=anyio.CapacityLimiter(min(db.pool_capacity, _THREADPOOL_THREADS - 8)),
    )

    app.add_middleware(RequestContext)

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        if exc.audit is not None:
            await in_db_slot(request.app.state.pprl, record_denial, request.app.state.pprl, exc)
        return JSONResponse({"error": exc.error, "detail": exc.detail}, status_code=exc.status,
                            headers={"WWW-Authenticate": "Bearer"} if exc.status == 401 else None)  # fmt: skip

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        detail = (
            f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg", "invalid"))
        )
        return JSONResponse({"error": "invalid request", "detail": detail}, status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, exc: Exception) -> JSONResponse:
        # never echo the exception: it could hold anything
        log("internal error", error_type=type(exc).__name__)
        return JSONResponse({"error": "internal error", "detail": "see the server log for the request id"},
                            status_code=500)  # fmt: skip

    # routes are matched in the order they are included, each router's routes one by
    # one, so the read path's routers come first: the results and audit reads were
    # matched after some 27 other routes, a twentieth of their CPU under load. No path
    # matches routes of two routers, so the order changes which route answers nothing
    app.include_router(audit.router)
    app.include_router(runs.router)
    app.include_router(home.router)
    app.include_router(docs.router)
    app.include_router(meta.router)
    app.include_router(tokens.router)
    app.include_router(projects.router)
    app.include_router(submissions.router)
    app.include_router(dpo.router)
    app.include_router(analyst.router)
    app.include_router(partner.router)
    return app
