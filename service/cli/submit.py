"""`pprl submit`: a partner seals its hashed extract to the pinned enclave key and uploads it.

Before a byte leaves the machine: the project's enclave key is fetched and its
fingerprint compared with the one the partner was given (``--enclave-fingerprint``) or
confirmed before (the saved pin, see ``service.cli.pinning``); the project's disclosure
policy fingerprint is compared with the one the partner agreed to; ``row_ref`` is left
out; the extract is sealed (``service.cli.sealed_extract``). The API sees only the
envelope and sealed bytes; the enclave's verdict follows (``--wait``).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import typer
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from service.cli._app import (
    JsonOption,
    api_client,
    app,
    emit,
    errors_as_messages,
    fail,
    out,
    progress,
)
from service.cli.pinning import Pin, config_root, load_pin, save_pin
from service.crypto.envelope import (
    ENVELOPE_HEADER,
    EnvelopeError,
    format_fingerprint,
    key_fingerprint,
    normalise_fingerprint,
)

__all__ = ["SubmitRefused", "submit_extract", "wait_for_verdict"]


class SubmitRefused(Exception):
    """The client refuses to send (wrong key, changed policy, unconfirmed first use)."""


@dataclass(frozen=True)
class Submitted:
    """The receipt, and what the partner's machine checked before sending."""

    receipt: dict[str, Any]
    enclave_fingerprint: str
    policy_fingerprint: str
    pin_path: Path | None


def _check_key(
    fingerprint: str, project: dict[str, Any], given: str | None, pin: Pin | None, trust: bool
) -> None:
    shown = format_fingerprint(fingerprint)
    recorded = project.get("enclave_key_fingerprint")
    if recorded and recorded != fingerprint:
        raise SubmitRefused(
            f"the service's enclave key ({shown}) is not the key recorded for project "
            f"{project['name']!r}: nothing was sent; tell your project lead"
        )
    if given is not None:
        if normalise_fingerprint(given) != fingerprint:
            raise SubmitRefused(
                f"the enclave key's fingerprint is {shown}, not the one you were given "
                f"({format_fingerprint(normalise_fingerprint(given))}): nothing was sent; "
                "check with your project lead"
            )
    elif pin is not None:
        if pin.enclave_key_fingerprint != fingerprint:
            raise SubmitRefused(
                f"the enclave key's fingerprint is now {shown}, not "
                f"{format_fingerprint(pin.enclave_key_fingerprint)} which you confirmed "
                "before: nothing was sent; check the new key with your project lead and pass "
                "--enclave-fingerprint"
            )
    elif not trust:
        raise SubmitRefused(
            f"first submission to project {project['name']!r}: check the enclave key "
            f"fingerprint {shown} with your project lead, then pass --enclave-fingerprint "
            "(or --trust to accept it as shown)"
        )


def _agreed_policy(project: dict[str, Any], pin: Pin | None, accept: str | None) -> str:
    current = str(project["policy_fingerprint"])
    if accept is not None:
        if accept.strip() != current:
            raise SubmitRefused(
                f"the project's disclosure policy is {current}, not {accept.strip()}: review "
                f"it with `pprl project show {project['name']}`"
            )
        return current
    if pin is not None and pin.policy_fingerprint != current:
        raise SubmitRefused(
            f"the project's disclosure policy has changed since you agreed to it (was "
            f"{pin.policy_fingerprint[:19]}..., now {current}): review it with `pprl project "
            f"show {project['name']}` and pass --accept-policy {current} to agree"
        )
    return current


def submit_extract(
    client: Any,
    project_ref: str,
    file: Path,
    *,
    enclave_fingerprint: str | None = None,
    trust: bool = False,
    accept_policy: str | None = None,
    config_dir: Path | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    period: str | None = None,
) -> Submitted:
    """Check the key and policy, seal ``file`` and upload it; returns the receipt.
    ``period``: the period the extract covers (e.g. 2026-Q1; None = the project's one).

    Raises :class:`SubmitRefused` before anything is sent when a check fails."""
    # pyarrow is imported where an extract is read: `pprl serve` runs in this CLI
    # process, and the API must not carry it
    from linkage.encode.file import read_manifest
    from service.cli.sealed_extract import needs_rewrite, seal_extract, stream_extract

    read_manifest(file)  # refuse a plaintext or foreign file before anything else
    project = client.request("GET", f"/v1/projects/{project_ref}")
    key_hex = client.request("GET", "/v1/enclave/public-key")["public_key_hex"]
    raw = bytes.fromhex(key_hex)
    fingerprint = key_fingerprint(raw)
    root = config_root(config_dir)
    pin = load_pin(root, project["id"])
    _check_key(fingerprint, project, enclave_fingerprint, pin, trust)
    policy = _agreed_policy(project, pin, accept_policy)
    recipient = X25519PublicKey.from_public_bytes(raw)
    url = f"/v1/projects/{project['id']}/submissions"
    with tempfile.TemporaryDirectory(prefix="pprl-submit-") as tmp:
        # as `pprl hash` writes it: sealed while it is sent, its digest after the body;
        # with row_ref inside (older versions): rewritten and sealed to a file first
        sealed = (
            seal_extract(file, Path(tmp) / "extract.sealed", recipient, project["id"], policy)
            if needs_rewrite(file)
            else stream_extract(file, recipient, project["id"], policy)
        )
        envelope = replace(sealed.envelope, period=period or "")  # a clear label, filed by the API
        size = envelope.sealed_bytes
        receipt = client.upload(
            url,
            sealed.body,
            envelope.body_bytes,
            on_progress=(lambda sent: on_progress(min(sent, size), size)) if on_progress else None,
            headers={ENVELOPE_HEADER: envelope.to_header()},
        )
    new_pin = Pin(client.settings.url, project["id"], project["name"], fingerprint, policy)
    path = None
    if new_pin != pin:
        path = save_pin(root, new_pin)  # confirmed: the upload was sent under this key
    return Submitted(receipt, fingerprint, policy, path)


def wait_for_verdict(
    client: Any, receipt: dict[str, Any], timeout: float, poll: float = 0.1
) -> dict[str, Any]:
    """Wait until the enclave accepted or rejected the submission (or ``timeout``).

    Each request asks the service to hold it until the verdict is recorded (``wait``, up
    to 30 s at a time), so the verdict comes within ~20 ms of being recorded. A service
    that answers at once (one older than ``wait``) is polled every ``poll`` seconds."""
    deadline = time.monotonic() + timeout
    url = f"/v1/projects/{receipt['project_id']}/submissions/{receipt['id']}"
    while receipt["status"] == "received":
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SubmitRefused(
                f"no verdict from the enclave after {timeout:g} s: submission {receipt['id']} "
                "is still waiting for the enclave worker (it was received, nothing is lost)"
            )
        wait = min(remaining, 30.0)
        asked = time.monotonic()
        receipt = client.request("GET", url, params={"wait": f"{wait:.2f}"})
        if receipt["status"] == "received" and time.monotonic() - asked < wait / 2:
            time.sleep(poll)  # it did not wait
    return receipt


@app.command()
def submit(
    file: Path = typer.Argument(..., help="The hashed Parquet file from `pprl hash`."),
    project: str = typer.Option(..., "--project", help="Project name or id."),
    enclave_fingerprint: str | None = typer.Option(
        None,
        "--enclave-fingerprint",
        help="The enclave key fingerprint your project lead gave you (64 hex digits; spaces "
        "allowed). Saved once it matches.",
    ),
    trust: bool = typer.Option(
        False, "--trust", help="First use only: accept the enclave key shown (trust on first use)."
    ),
    accept_policy: str | None = typer.Option(
        None, "--accept-policy", help="Agree to the project's (changed) disclosure policy."
    ),
    period: str | None = typer.Option(
        None,
        "--period",
        help="The period the extract covers, e.g. 2026-Q1 (default: the project's one period).",
    ),
    wait: bool = typer.Option(False, "--wait", help="Wait for the enclave's verdict."),
    wait_seconds: float = typer.Option(600.0, "--wait-seconds", help="How long --wait waits."),
    as_json: bool = JsonOption,
) -> None:
    """Seal a hashed extract to the project's enclave key and upload it (partner token).

    Shows the enclave key fingerprint and refuses a key that does not match the one you
    were given or confirmed before; refuses a changed disclosure policy until you accept
    it; leaves row_ref out. Prints the receipt (and, with --wait, the enclave's verdict).
    """
    from linkage.encode.file import read_manifest
    from service.settings import ClientSettings

    with errors_as_messages():
        read_manifest(file)
    with api_client() as client:
        with progress("bytes") as bar:
            task = bar.add_task(f"sealing and uploading {file.name}", total=None)
            try:
                done = submit_extract(
                    client, project, file, enclave_fingerprint=enclave_fingerprint, trust=trust,
                    accept_policy=accept_policy, config_dir=ClientSettings().config_dir,
                    period=period, on_progress=lambda sent, total: bar.update(task, completed=sent, total=total),
                )  # fmt: skip
            except (SubmitRefused, EnvelopeError, ValueError) as exc:
                fail(str(exc))
        receipt = done.receipt
        if wait:
            try:
                receipt = wait_for_verdict(client, receipt, wait_seconds)
            except SubmitRefused as exc:
                fail(str(exc))
    result = {
        **receipt,
        "enclave_fingerprint": format_fingerprint(done.enclave_fingerprint),
        "policy_fingerprint": done.policy_fingerprint,
    }

    def render() -> None:
        out.print(f"enclave key fingerprint: {format_fingerprint(done.enclave_fingerprint)}")
        out.print(f"disclosure policy: {done.policy_fingerprint}")
        if done.pin_path is not None:
            out.print(f"saved as agreed in {done.pin_path}")
        verdict = receipt["status"]
        line = (
            f"{verdict}: version {receipt['version']} of {receipt['partner']}, "
            f"{receipt['rows']:,} rows, sealed sha256 {receipt['sha256'][:16]}..."
        )
        if receipt.get("period"):
            line += f", period {receipt['period']}"
        if verdict == "rejected":
            line += f" - {receipt.get('reason')}"
        out.print(line)

    emit(result, as_json, render)
    if receipt["status"] == "rejected":
        raise typer.Exit(1)
