"""`pprl audit list|export|verify`: the DPO's view of the log.

``list`` and ``export`` use the API with a DPO token. ``verify`` checks the chain through
the API, or directly in the database (``--database``, on the service host), or offline
from an export file and the audit public key alone (``--file``, ``--public-key``).
"""

from __future__ import annotations

from pathlib import Path

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from rich.table import Table

from service.cli._app import JsonOption, api_client, audit_app, emit, fail, out


@audit_app.command("list")
def list_events(
    project: str | None = typer.Option(None, "--project"),
    actor: str | None = typer.Option(None, "--actor"),
    action: str | None = typer.Option(None, "--action", help="Prefix, e.g. submission."),
    outcome: str | None = typer.Option(None, "--outcome", help="ok, denied, rejected, failed."),
    limit: int = typer.Option(50, "--limit"),
    as_json: bool = JsonOption,
) -> None:
    """Recent audit events, newest first (DPO token)."""
    params = {k: v for k, v in {"project": project, "actor": actor, "action": action,
                                "outcome": outcome, "limit": limit}.items() if v is not None}  # fmt: skip
    with api_client() as client:
        data = client.request("GET", "/v1/audit", params=params)

    def render() -> None:
        table = Table("seq", "at", "actor", "action", "outcome", "subject")
        for e in data["events"]:
            table.add_row(
                str(e["seq"]),
                e["at"][:19],
                e["actor"],
                e["action"],
                e["outcome"],
                str(e["subject"] or ""),
            )
        out.print(table)
        out.print(f"{data['total']} matching events")

    emit(data, as_json, render)


@audit_app.command("export")
def export(
    output: Path = typer.Argument(..., help="File to write."),
    fmt: str = typer.Option("jsonl", "--format", help="jsonl or csv."),
    as_json: bool = JsonOption,
) -> None:
    """Download the whole log with hashes and checkpoints, for offline verification."""
    if fmt not in ("jsonl", "csv"):
        fail("--format must be jsonl or csv")
    with api_client() as client:
        text = client.text("GET", "/v1/audit/export", params={"format": fmt})
    tmp = output.with_name(f".{output.name}.partial")
    tmp.write_text(text)
    tmp.replace(output)
    emit(
        {"file": str(output), "bytes": len(text.encode())},
        as_json,
        lambda: out.print(f"wrote {output}"),
    )


@audit_app.command("verify")
def verify(
    file: Path | None = typer.Option(None, "--file", help="Verify an export file offline."),
    public_key: str | None = typer.Option(
        None, "--public-key", help="Audit public key (hex) you trust."
    ),
    database: bool = typer.Option(
        False, "--database", help="Read the database directly (service host)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Recompute the hash chain and check every signed checkpoint; name the first broken event."""
    if file is not None:
        from service.audit.review import parse_export, verify_stream

        try:
            events, checkpoints, stated = parse_export(file.read_text())
        except (OSError, ValueError, KeyError) as exc:
            fail(f"{file}: not a readable audit export ({type(exc).__name__})")
        key_hex = public_key or stated
        if key_hex is None:
            fail("give --public-key (the audit public key you trust)")
        if public_key is None:
            out.print("[yellow]warning:[/] using the public key stated inside the export; "
                      "pass --public-key to check against one obtained out of band")  # fmt: skip
        try:
            key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(key_hex))
        except ValueError:
            fail("--public-key is not a 64-hex-digit Ed25519 key")
        report = verify_stream(events, checkpoints, key)
        result = {**report.__dict__, "summary": report.summary()}
    elif database:
        from service.audit.review import verify as verify_db
        from service.crypto import load_signing_key
        from service.db import Database
        from service.settings import Settings

        settings = Settings()
        db = Database(settings.url)
        with db.transaction() as session:
            report = verify_db(
                session, load_signing_key(settings.audit_signing_key_path).public_key()
            )
        result = {**report.__dict__, "summary": report.summary()}
    else:
        with api_client() as client:
            result = client.request("GET", "/v1/audit/verify")
    emit(result, as_json, lambda: out.print(result["summary"]))
    if not result["ok"]:
        raise typer.Exit(2)
