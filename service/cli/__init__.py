"""The `pprl` command line. Each module registers its commands on the shared app.

The partner's commands (`keygen`, `check`, `hash`, `submit`) need only the plain install
(``pip install pprl-linkage``); the others need the ``server`` extra and are registered
only when its packages are there, so a partner's laptop never imports them.
"""

from __future__ import annotations

import importlib
import sys

from service.cli._app import app, err

__all__ = ["SERVER_PACKAGES", "app", "main"]

#: modules the partner's commands live in: they import no server package
_PARTNER_MODULES = ("hashing", "submit")
#: modules whose commands need the ``server`` extra (or its client libraries)
_SERVER_MODULES = ("admin", "analyst", "audit", "demo", "project", "serve")
#: what the ``server`` extra adds; a missing one means a partner-only install
SERVER_PACKAGES = frozenset({"splink", "duckdb", "fastapi", "starlette", "uvicorn", "sqlalchemy",
                             "alembic", "psycopg", "opendp", "matplotlib", "pandas", "jinja2",
                             "multipart", "psutil", "fastapi_offline"})  # fmt: skip
_missing: list[str] = []


def _register() -> None:
    for name in _PARTNER_MODULES:
        importlib.import_module(f"service.cli.{name}")
    for name in _SERVER_MODULES:
        try:
            importlib.import_module(f"service.cli.{name}")
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] not in SERVER_PACKAGES:
                raise
            _missing.append(exc.name or name)


_register()


def main() -> None:
    """Console-script entry point."""
    if _missing and len(sys.argv) > 1 and sys.argv[1] not in ("keygen", "check", "hash", "submit",
                                                              "--help", "-h", "--version"):  # fmt: skip
        err.print(
            f"[bold red]error:[/] `pprl {sys.argv[1]}` needs the server extra ({_missing[0]} is "
            "not installed): pip install 'pprl-linkage\\[server]'"
        )
        sys.exit(2)
    app()
