"""The `pprl` command line. Each module registers its commands on the shared app."""

from __future__ import annotations

from service.cli import (  # noqa: F401  (imported to register commands)
    admin,
    analyst,
    audit,
    demo,
    hashing,
    project,
    serve,
    submit,
)
from service.cli._app import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app()
