"""`pprl audit list|export|verify`: the DPO's view of the log.

``list`` and ``export`` use the API with a DPO token. ``verify`` always checks on this
machine: a download from the API (default), the database (``--database``, on the service
host), or an export file with the audit public key alone (``--file``, ``--public-key``);
each time it proves the log extends the receipt kept from the last verification.
``checkpoint`` asks the signer to sign the head now.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from rich.table import Table

if TYPE_CHECKING:
    from service.audit.receipt import Receipt

from service.cli._app import JsonOption, api_client, audit_app, emit, err, fail, out


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


def _trusted_key(given: str | None, receipt: Receipt | None, stated: str | None) -> str:
    if given is not None:
        return given
    if receipt is not None:
        return receipt.public_key
    if stated is None:
        fail("give --public-key (the audit public key you trust)")
    err.print("[yellow]warning:[/] trusting the public key the service states on first use; "
              "pass --public-key to check against one obtained out of band")  # fmt: skip
    return stated


def _load_since(path: Path | None, default: Path | None) -> Receipt | None:
    """The receipt to prove extension of: --since, else the receipt kept from last time."""
    from service.audit.receipt import ReceiptError, load_receipt

    chosen = path or (default if default is not None and default.exists() else None)
    if chosen is None:
        return None
    try:
        return load_receipt(chosen)
    except ReceiptError as exc:
        fail(str(exc))


def _key(hex_key: str) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(hex_key))
    except ValueError:
        fail("--public-key is not a 64-hex-digit Ed25519 key")


@audit_app.command("verify")
def verify(
    file: Path | None = typer.Option(None, "--file", help="Verify an export file offline."),
    public_key: str | None = typer.Option(
        None, "--public-key", help="Audit public key (hex) you trust."
    ),
    database: bool = typer.Option(
        False, "--database", help="Read the database directly (service host)."
    ),
    since: Path | None = typer.Option(
        None, "--since", help="A receipt from an earlier verification: prove the log extends it."
    ),
    receipt_file: Path | None = typer.Option(
        None,
        "--receipt",
        help="Where the receipt is kept (read as --since if present, rewritten on success); "
        "default ~/.config/pprl/audit-receipts/<key>.json.",
    ),
    keep_receipt: bool = typer.Option(
        True, "--keep-receipt/--no-receipt", help="Write the verified head as a receipt."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Verify the log on this machine: the hash chain, the signed checkpoints, and that it
    extends the head you verified last time (your receipt); name the first broken event.

    Online (default) the log is downloaded from the service and checked here, so the
    service's own view is never trusted. Exit 0 verified (amber warning for an unsigned
    tail), 2 broken or unprovable.
    """
    from service.audit.receipt import default_receipt_path, save_receipt
    from service.audit.review import parse_export, receipt_for, verify_stream

    given = public_key.lower() if public_key else None
    if given is not None:
        _key(given)
    explicit = since
    pinned = receipt_file or (default_receipt_path(given) if given else None)
    prior = _load_since(explicit, pinned)
    stated: str | None = None
    require_signed = True
    if file is not None:
        try:
            events, checkpoints, stated = parse_export(file.read_text())
        except (OSError, ValueError, KeyError) as exc:
            fail(f"{file}: not a readable audit export ({type(exc).__name__})")
    elif database:
        from service.audit.keys import load_audit_public_key
        from service.audit.review import _checkpoints, _events
        from service.crypto import KeyFileError, public_key_hex
        from service.db import Database
        from service.settings import Settings

        settings = Settings()
        try:
            stated = public_key_hex(load_audit_public_key(settings))
        except KeyFileError as exc:
            fail(str(exc))
        db = Database(settings.url)
        with db.snapshot() as session:
            start = prior.seq if prior is not None else 1
            events, checkpoints = list(_events(session, start)), _checkpoints(session)
        db.dispose()
        require_signed = False  # the service host's own view: an unsigned log is amber
    else:
        with api_client() as client:
            stated = client.request("GET", "/v1/audit/public-key")["public_key_hex"]
            params: dict[str, object] = {"format": "jsonl"}
            if prior is not None:
                params["from_seq"] = prior.seq
            events, checkpoints, _ = parse_export(
                client.text("GET", "/v1/audit/export", params=params)
            )
    key_hex = _trusted_key(given, prior, stated)
    if prior is None and explicit is None and receipt_file is None:
        prior = _load_since(None, default_receipt_path(key_hex))
    report = verify_stream(events, checkpoints, _key(key_hex), since=prior,
                           stated_key=stated, require_signed=require_signed)  # fmt: skip
    result = report.as_dict()
    if report.ok and keep_receipt:
        new = receipt_for(report, checkpoints, key_hex, prior)
        if new is not None:
            target = receipt_file or default_receipt_path(key_hex)
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            save_receipt(target, new)
            result["receipt"] = str(target)
    if prior is not None:
        result["since"] = {"seq": prior.seq, "hash": prior.hash}

    def render() -> None:
        colour = "green" if report.ok and not report.warning else "yellow" if report.ok else "red"
        out.print(f"[{colour}]{report.summary()}[/]")
        if prior is not None and report.ok:
            out.print(f"extends the head you verified before (event {prior.seq})")
        if "receipt" in result:
            out.print(f"receipt: {result['receipt']}")

    emit(result, as_json, render)
    if not report.ok:
        raise typer.Exit(2)


@audit_app.command("checkpoint")
def checkpoint(
    database: bool = typer.Option(
        False, "--database", help="Sign here with the signing key file (signer host)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Have the current head signed now (a DPO's request; the worker's signer signs it)."""
    if database:
        from service.audit.checkpoints import sign_checkpoint
        from service.crypto import KeyFileError, load_signing_key
        from service.db import Database
        from service.settings import Settings

        settings = Settings()
        try:
            key = load_signing_key(settings.audit_signing_key_path)
        except KeyFileError as exc:
            fail(str(exc))
        db = Database(settings.url)
        with db.transaction() as session:
            row = sign_checkpoint(session, key, manual=True)
            result = {"status": "signed", "seq": row.seq, "head_hash": row.head_hash,
                      "signature": row.signature}  # fmt: skip
        db.dispose()
    else:
        with api_client() as client:
            result = client.request("POST", "/v1/audit/checkpoints")

    def render() -> None:
        if result.get("status") == "pending":
            out.print("[yellow]requested; the signer has not answered yet (is the worker up?)[/]")
        else:
            out.print(f"signed checkpoint at event {result['seq']}")

    emit(result, as_json, render)
    if result.get("status") == "pending":
        raise typer.Exit(3)
