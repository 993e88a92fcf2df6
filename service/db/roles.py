"""PostgreSQL role separation: the schema's owner migrates; the application connects as a
role that owns nothing and may only read and write rows.

The append-only triggers on the audit tables belong to the tables' owner. An application
role that owns no table cannot ``DROP TRIGGER``, ``ALTER TABLE`` or ``TRUNCATE``, and on
the audit tables it holds only ``SELECT`` and ``INSERT``: an insider with the
application's credentials can add events but neither change nor remove one.

Run :func:`grant_app_role` as the owner after every migration (``pprl admin init
--app-role NAME`` does both), so tables added by later migrations get their grants too.
"""

from __future__ import annotations

import re

from sqlalchemy import create_engine, text

__all__ = ["APPEND_ONLY_TABLES", "READ_ONLY_TABLES", "grant_app_role"]

APPEND_ONLY_TABLES = ("audit_events", "audit_checkpoints")
READ_ONLY_TABLES = ("alembic_version",)
_ROLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def grant_app_role(url: str, role: str, *, password: str | None = None) -> list[str]:
    """Create ``role`` (LOGIN, no other attributes) if absent and give it exactly the row
    rights the service needs; returns the tables granted. Refuses a role that owns tables.
    """
    if not _ROLE.fullmatch(role):
        raise ValueError(f"--app-role {role!r}: use lower-case letters, digits and _ only")
    if not url.startswith("postgresql"):
        raise ValueError("--app-role applies to PostgreSQL only (SQLite has no roles)")
    engine = create_engine(url, hide_parameters=True)
    try:
        with engine.begin() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}
            ).first()
            if exists is None:
                conn.execute(text(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOCREATEDB '
                                  "NOCREATEROLE NOINHERIT"))  # fmt: skip
            if password is not None:
                conn.execute(text(f'ALTER ROLE "{role}" PASSWORD :p'), {"p": password})
            owned = (
                conn.execute(
                    text("SELECT tablename FROM pg_tables WHERE tableowner = :r"), {"r": role}
                )
                .scalars()
                .all()
            )
            if owned:
                raise ValueError(
                    f"role {role!r} owns {len(owned)} table(s): the application role must own "
                    "none (migrate as another role)"
                )
            database = conn.execute(text("SELECT current_database()")).scalar_one()
            conn.execute(text(f'REVOKE CREATE, TEMPORARY ON DATABASE "{database}" FROM "{role}"'))
            conn.execute(text(f'REVOKE CREATE, TEMPORARY ON DATABASE "{database}" FROM PUBLIC'))
            conn.execute(text(f'GRANT CONNECT ON DATABASE "{database}" TO "{role}"'))
            conn.execute(text("REVOKE CREATE ON SCHEMA public FROM PUBLIC"))
            conn.execute(text(f'REVOKE ALL ON SCHEMA public FROM "{role}"'))
            conn.execute(text(f'GRANT USAGE ON SCHEMA public TO "{role}"'))
            tables = (
                conn.execute(
                    text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
                )
                .scalars()
                .all()
            )
            for table in tables:
                conn.execute(text(f'REVOKE ALL ON TABLE "{table}" FROM "{role}"'))
                if table in APPEND_ONLY_TABLES:
                    rights = "SELECT, INSERT"
                elif table in READ_ONLY_TABLES:
                    rights = "SELECT"
                else:
                    rights = "SELECT, INSERT, UPDATE, DELETE"
                conn.execute(text(f'GRANT {rights} ON TABLE "{table}" TO "{role}"'))
            conn.execute(text(f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{role}"'))
            return list(tables)
    finally:
        engine.dispose()
