"""The API as each process of `pprl serve --processes N` builds it (N > 1).

uvicorn starts those processes fresh and has each import this factory: one interpreter
runs one request's Python at a time, so on a machine with several cores one process
leaves the others idle while its queue grows. The parent keeps the one embedded enclave
worker; these processes never start one.
"""

from __future__ import annotations

import gc

from fastapi import FastAPI

__all__ = ["make_app"]


def make_app() -> FastAPI:
    """The app for one API process, from the ``PPRL_*`` settings."""
    from service.app import create_app
    from service.logs import configure_logging
    from service.settings import Settings

    settings = Settings()
    settings.worker_embedded = False  # the serving parent supervises the one worker
    application = create_app(settings)
    configure_logging(settings.log_level)
    gc.freeze()  # as `pprl serve` does for one process: start-up objects out of full passes
    return application
