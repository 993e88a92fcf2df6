"""`pprl admin ...`: operator commands run on the service host (they use the database
and key files directly, from the ``PPRL_*`` settings)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.table import Table
from sqlalchemy import select

from service.audit import Actor
from service.auth import create_principal, revoke_principal
from service.bootstrap import initialise
from service.cli._app import JsonOption, admin_app, emit, fail, out, token_app
from service.crypto import KeyFileError
from service.db import Database
from service.db.models import Principal
from service.errors import ServiceError
from service.settings import Settings

OPERATOR = Actor("operator", "admin")


@contextmanager
def service_errors() -> Iterator[None]:
    try:
        yield
    except (ServiceError, KeyFileError) as exc:
        fail(str(exc))
    except ValueError as exc:  # settings validation
        fail(f"settings: {exc}")


@admin_app.command("init")
def init(
    admin_name: str = typer.Option("admin", "--admin-name", help="Name of the first admin."),
    if_needed: bool = typer.Option(
        False,
        "--if-needed",
        help="Already initialised: just migrate and exit 0 (for container start-up).",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Migrate the database, make the enclave and audit keys, print the first admin token once."""
    if if_needed:
        from service.db import migrate

        settings = Settings()
        migrate(settings.url)
        db = Database(settings.url)
        with db.transaction() as session:
            exists = session.execute(select(Principal.id).limit(1)).first() is not None
        db.dispose()
        if exists:
            emit(
                {"initialised": True, "migrated": True},
                as_json,
                lambda: out.print("already initialised; migrated"),
            )
            return
    with service_errors():
        done = initialise(Settings(), admin_name)
    emit(
        {
            "admin": done.admin_name,
            "token": done.admin_token,
            "enclave_public_key": done.enclave_public_key,
            "audit_public_key": done.audit_public_key,
            "database": done.database,
        },
        as_json,
        lambda: out.print(
            f"initialised ({done.database}).\n"
            f"enclave public key: {done.enclave_public_key}\n"
            f"audit public key:   {done.audit_public_key}\n"
            f"admin token (shown once, keep it safe):\n{done.admin_token}"
        ),
    )


@token_app.command("create")
def token_create(
    role: str = typer.Option(..., "--role", help="admin, partner, analyst or dpo."),
    name: str = typer.Option(..., "--name", help="Who holds it, e.g. 'housing' or 'j.smith'."),
    project: list[str] = typer.Option([], "--project", help="Project to join (repeatable)."),
    expires_days: float | None = typer.Option(None, "--expires-days", help="Expire after N days."),
    as_json: bool = JsonOption,
) -> None:
    """Create a principal with a role and print its bearer token (shown once)."""
    with service_errors():
        db = Database(Settings().url)
        with db.transaction() as session:
            row, token = create_principal(session, name=name, role=role, by=OPERATOR,
                                          projects=project, expires_days=expires_days)  # fmt: skip
            result = {"id": row.id, "name": row.name, "role": row.role, "token": token,
                      "projects": project}  # fmt: skip
        db.dispose()
    emit(result, as_json, lambda: out.print(f"{role} token for {name} (shown once):\n{token}"))


@token_app.command("list")
def token_list(as_json: bool = JsonOption) -> None:
    """List principals (never their tokens)."""
    with service_errors():
        db = Database(Settings().url)
        with db.transaction() as session:
            rows = [
                {
                    "id": r.id,
                    "name": r.name,
                    "role": r.role,
                    "created_at": r.created_at,
                    "expires_at": r.expires_at,
                    "revoked_at": r.revoked_at,
                }
                for r in session.execute(select(Principal).order_by(Principal.created_at)).scalars()
            ]
        db.dispose()

    def render() -> None:
        table = Table("name", "role", "created", "expires", "revoked")
        for r in rows:
            table.add_row(str(r["name"]), str(r["role"]), str(r["created_at"])[:19],
                          str(r["expires_at"] or "")[:19], str(r["revoked_at"] or "")[:19])  # fmt: skip
        out.print(table)

    emit({"principals": rows}, as_json, render)


@token_app.command("revoke")
def token_revoke(
    name: str = typer.Argument(..., help="Name or id."), as_json: bool = JsonOption
) -> None:
    """Revoke a principal's token."""
    with service_errors():
        db = Database(Settings().url)
        with db.transaction() as session:
            row = revoke_principal(session, name_or_id=name, by=OPERATOR)
            result = {"name": row.name, "revoked_at": row.revoked_at}
        db.dispose()
    emit(result, as_json)


@admin_app.command("purge")
def purge(as_json: bool = JsonOption) -> None:
    """Delete sealed submissions past their project's retention now (each purge audited)."""
    from service.retention import purge_expired

    with service_errors():
        settings = Settings()
        db = Database(settings.url)
        count = purge_expired(settings, db, OPERATOR)
        db.dispose()
    emit(
        {"purged": count},
        as_json,
        lambda: out.print(f"purged {count} submission(s) past retention"),
    )
