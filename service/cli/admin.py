"""`pprl admin ...`: operator commands run on the service host (they use the database
and key files directly, from the ``PPRL_*`` settings)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.table import Table
from sqlalchemy import select

from service.audit import Actor
from service.auth import create_partner, create_principal, revoke_principal, rotate_token
from service.bootstrap import initialise
from service.cli._app import JsonOption, admin_app, emit, err, fail, out, token_app
from service.crypto import KeyFileError
from service.db import Database
from service.db.models import Partner, Principal
from service.errors import ServiceError
from service.settings import Settings

OPERATOR = Actor("operator", "admin")
partner_app = typer.Typer(
    help="Partner organisations: a partner exists apart from its tokens.", no_args_is_help=True
)
admin_app.add_typer(partner_app, name="partner")


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
    app_role: str | None = typer.Option(
        None,
        "--app-role",
        help="PostgreSQL: after migrating (as the owner), grant this login role row rights "
        "only (no DDL; SELECT/INSERT on the audit tables). The service then connects as it.",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Migrate the database, make the enclave and audit keys, print the first admin token once."""
    if app_role is not None:
        from service.db import migrate
        from service.db.roles import grant_app_role

        with service_errors():
            settings = Settings()
            migrate(settings.url)
            password = settings.app_role_password
            grant_app_role(
                settings.url, app_role, password=password.get_secret_value() if password else None
            )
        err.print(f"granted row rights to role {app_role} (owns no tables, no DDL)")
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
    partner: str | None = typer.Option(
        None,
        "--partner",
        help="role partner: the organisation the token is issued to (from `pprl admin partner "
        "add`); default: the organisation named like the token.",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Create a principal with a role and print its bearer token (shown once)."""
    with service_errors():
        db = Database(Settings().url)
        with db.transaction() as session:
            row, token = create_principal(session, name=name, role=role, by=OPERATOR,
                                          projects=project, expires_days=expires_days,
                                          partner=partner)  # fmt: skip
            org = session.get(Partner, row.partner_id) if row.partner_id else None
            result = {"id": row.id, "name": row.name, "role": row.role, "token": token,
                      "projects": project, "partner": org.name if org else None}  # fmt: skip
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


@token_app.command("rotate")
def token_rotate(
    name: str = typer.Argument(..., help="Name or id of the token's principal."),
    expires_days: float | None = typer.Option(None, "--expires-days", help="Expire after N days."),
    as_json: bool = JsonOption,
) -> None:
    """Issue a fresh token to a principal (printed once); the old token stops working now.

    The principal keeps its partner organisation, projects, submissions and history.
    """
    with service_errors():
        db = Database(Settings().url)
        with db.transaction() as session:
            row, token = rotate_token(session, name_or_id=name, by=OPERATOR,
                                      expires_days=expires_days)  # fmt: skip
            result = {"id": row.id, "name": row.name, "role": row.role, "token": token}
        db.dispose()
    emit(result, as_json, lambda: out.print(f"new token for {row.name} (shown once):\n{token}"))


@partner_app.command("add")
def partner_add(
    name: str = typer.Argument(..., help="The organisation, e.g. 'housing'."),
    project: list[str] = typer.Option([], "--project", help="Project it takes part in (repeatable)."),
    as_json: bool = JsonOption,
) -> None:
    """Register a partner organisation; then issue it tokens with
    `pprl admin token create --role partner --partner NAME --name TOKEN-NAME`."""
    with service_errors():
        db = Database(Settings().url)
        with db.transaction() as session:
            org = create_partner(session, name=name, by=OPERATOR, projects=project)
            result = {"id": org.id, "name": org.name, "projects": project}
        db.dispose()
    emit(result, as_json, lambda: out.print(f"partner {name} registered"))


@partner_app.command("list")
def partner_list(as_json: bool = JsonOption) -> None:
    """List partner organisations and how many live tokens each holds."""
    from datetime import UTC, datetime

    with service_errors():
        db = Database(Settings().url)
        with db.transaction() as session:
            now = datetime.now(UTC)
            rows = []
            for org in session.execute(select(Partner).order_by(Partner.name)).scalars():
                tokens = session.execute(
                    select(Principal).where(Principal.partner_id == org.id)
                ).scalars()
                live = sum(1 for t in tokens if t.revoked_at is None
                           and (t.expires_at is None or t.expires_at > now))  # fmt: skip
                rows.append({"id": org.id, "name": org.name, "live_tokens": live,
                             "created_at": org.created_at})  # fmt: skip
        db.dispose()

    def render() -> None:
        table = Table("partner", "live tokens", "created")
        for r in rows:
            table.add_row(str(r["name"]), str(r["live_tokens"]), str(r["created_at"])[:19])
        out.print(table)

    emit({"partners": rows}, as_json, render)


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
