"""`pprl` commands: analyst (being built)."""

from __future__ import annotations

from service.cli._app import app  # noqa: F401
