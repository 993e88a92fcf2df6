"""Persistence: engine and sessions, the models, and migrations run through Alembic."""

from service.db.engine import Database, migrate

__all__ = ["Database", "migrate"]
