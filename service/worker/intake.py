"""The enclave's intake: open each received submission, judge it, accept or reject it.

Runs in the worker before it claims runs. Each payload is opened and validated in a
child process (``service.worker.validator``) under an address-space limit
(``PPRL_VALIDATION_MEMORY_MB`` plus the payload's size) and a CPU and wall-clock limit
(``PPRL_VALIDATION_TIMEOUT_SECONDS``): a decompression bomb or a pathological file ends
the child, and the worker records a rejection and carries on.

Transitions, each audited in the transaction that makes it: ``received`` ->
``accepted`` (the partner's previous accepted submission is superseded now, never at
upload, so a rejected file never displaces a good one) or ``received`` -> ``rejected``
(the reason is safe to show: it names no value; the sealed payload is deleted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from sqlalchemy import select, update

from linkage.spec import policy_fingerprint
from service.audit import Actor, record
from service.crypto.envelope import Envelope
from service.db import Database
from service.db.models import Principal, Project, Submission
from service.logs import log
from service.projects.service import disclosure_policy
from service.settings import Settings
from service.worker.acceptance import acceptance_tag
from service.worker.supervise import fork_server
from service.worker.validator import PAYLOAD_DIFFERS, run_job

if TYPE_CHECKING:
    from service.worker.streaming import EarlyIntake

__all__ = [
    "Verdict",
    "for_bytes",
    "judge_in_child",
    "judge_submission",
    "project_terms",
    "validate_received",
    "validation_job",
]


@dataclass(frozen=True)
class Verdict:
    """The validator's answer: ``ok`` with the verified counts, or a reason and detail."""

    ok: bool
    reason: str = ""
    detail: str = ""
    rows: int = 0
    rows_rejected: int = 0
    key_check_value: str = ""
    tool_version: str = ""
    peak_rss_mb: float = 0.0  # the validator child's own peak
    sealed_sha256: str = ""  # of the bytes a child read
    payload_sha256: str = ""  # of the Parquet inside them


def judge_in_child(settings: Settings, job: dict[str, Any], payload_bytes: int) -> Verdict:
    """Run the validator child on one job under the configured limits."""
    memory = (settings.validation_memory_mb << 20) + 3 * payload_bytes
    timeout = settings.validation_timeout_seconds
    limit_text = (
        f"the validator's limits ({memory >> 20:,} MB of memory, {timeout:g} s): refused as "
        "a possible decompression bomb or hostile file"
    )
    context = fork_server()
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=run_job, args=(sender, memory, math.ceil(timeout), job),
                            daemon=True)  # fmt: skip
    child.start()
    sender.close()
    verdict: Any = None
    try:
        if not receiver.poll(timeout):
            child.kill()
            return Verdict(False, "time_limit", f"reading the file took longer than {limit_text}")
        verdict = receiver.recv()
    except (EOFError, OSError):
        verdict = None  # the child died (killed at its limit) before answering
    finally:
        receiver.close()
        child.join(10)
        if child.is_alive():
            child.kill()
            child.join()
    if not isinstance(verdict, dict):
        return Verdict(False, "validator_limit", f"the file could not be read within {limit_text}")
    peak = round(float(verdict.get("peak_rss_kb", 0)) / 1024, 1)
    if verdict.get("reason") == "memory_limit":
        return Verdict(
            False,
            "memory_limit",
            f"reading the file needs more than {limit_text}",
            peak_rss_mb=peak,
        )
    if verdict.get("reason") == "internal":
        return Verdict(
            False, "internal", f"the validator failed ({verdict.get('detail', '')[:60]})"
        )
    if not verdict.get("ok"):
        return Verdict(
            False, str(verdict.get("reason", "")), str(verdict.get("detail", "")), peak_rss_mb=peak
        )
    return Verdict(
        True,
        rows=int(verdict["rows"]),
        rows_rejected=int(verdict["rows_rejected"]),
        key_check_value=str(verdict["key_check_value"]),
        tool_version=str(verdict["tool_version"]),
        peak_rss_mb=peak,
        sealed_sha256=str(verdict.get("sealed_sha256", "")),
        payload_sha256=str(verdict.get("payload_sha256", "")),
    )


def validation_job(
    settings: Settings, private_key_hex: str, path: Path, envelope_json: str, project: Project
) -> dict[str, Any]:
    """What a validator child is given: the enclave key, where the sealed bytes are, their
    envelope, and the project's terms now (with the repeat limits)."""
    return {
        "private_key": private_key_hex,
        "path": str(path),
        "envelope": envelope_json,
        "project": {
            "project_id": project.id,
            "spec_fingerprint": project.spec_fingerprint,
            "spec_json": project.spec_json,
            "key_check_value": project.key_check_value,
            "policy_fingerprint": policy_fingerprint(disclosure_policy(project)),
        },
        "max_identity_share": settings.max_identity_share,
        "max_identity_floor": settings.max_identity_repeats_floor,
    }


def project_terms(job: dict[str, Any]) -> tuple[Any, ...]:
    """The terms a verdict on ``job`` holds under (an early verdict is used only under
    the same ones)."""
    expect = job["project"]
    return (expect["project_id"], expect["spec_fingerprint"], expect["key_check_value"],
            expect["policy_fingerprint"], job["max_identity_share"],
            job["max_identity_floor"])  # fmt: skip


def validate_received(
    settings: Settings,
    db: Database,
    key: X25519PrivateKey,
    actor: Actor,
    batch: int = 20,
    early: EarlyIntake | None = None,
) -> int:
    """Judge every received submission, oldest first, ``batch`` at a time; returns how
    many were judged."""
    judged = 0
    while True:
        with db.snapshot() as session:
            pending = (
                session.execute(
                    select(Submission.id)
                    .where(Submission.status == "received", Submission.purged_at.is_(None))
                    .order_by(Submission.received_at)
                    .limit(batch)
                )
                .scalars()
                .all()
            )
        for submission_id in pending:
            judge_submission(settings, db, key, actor, submission_id, early)
        judged += len(pending)
        if len(pending) < batch:
            return judged


def judge_submission(
    settings: Settings,
    db: Database,
    key: X25519PrivateKey,
    actor: Actor,
    submission_id: str,
    early: EarlyIntake | None = None,
) -> None:
    """Judge one received submission (none other): with the acceptance a streaming child
    reached for exactly its bytes under the same terms (``early``), else in a child now."""
    with db.snapshot() as session:
        sub = session.get(Submission, submission_id)
        if sub is None or sub.status != "received":
            return
        project = session.get(Project, sub.project_id)
        if project is None:
            return
        job = validation_job(settings, key.private_bytes_raw().hex(),
                             settings.data_dir / sub.blob_path, sub.envelope_json or "{}",
                             project)  # fmt: skip
        size, digest = sub.bytes, sub.sha256
    verdict = early.take(digest, project_terms(job), size) if early is not None else None
    if verdict is None:
        verdict = judge_in_child(settings, job, size)
    del job
    _decide(settings, db, key, actor, submission_id, verdict)


def for_bytes(verdict: Verdict, sealed_sha256: str, payload_sha256: str | None = None) -> Verdict:
    """``verdict``, if it was reached on the bytes a submission names (``sealed_sha256``,
    recorded by the API as they arrived); otherwise a refusal: an acceptance tag names
    those bytes, so it must never be given for others the validator judged.

    ``payload_sha256`` is the Parquet digest the submission's envelope records. A child
    that judged an upload while it arrived could not compare it when the digest followed
    the body, so it is compared here: a partner's digest that does not name the extract
    it sent is refused as it would have been in the header."""
    if not verdict.ok:
        return verdict
    if verdict.sealed_sha256 != sealed_sha256:
        return Verdict(False, "altered", (
            "the sealed payload in storage is not the one that was received (altered in "
            "storage or in the database)"
        ))  # fmt: skip
    if payload_sha256 is not None and verdict.payload_sha256 != payload_sha256:
        return Verdict(False, "agreement", PAYLOAD_DIFFERS)
    return verdict


def _decide(
    settings: Settings,
    db: Database,
    key: X25519PrivateKey,
    actor: Actor,
    submission_id: str,
    verdict: Verdict,
) -> None:
    now = datetime.now(UTC)
    with db.transaction() as session:
        sub = session.get(Submission, submission_id)
        if sub is None:
            return
        project = session.execute(
            select(Project).where(Project.id == sub.project_id).with_for_update()
        ).scalar_one()
        partner = session.get(Principal, sub.partner_id)
        partner_name = partner.name if partner else "?"
        envelope = Envelope.from_json(sub.envelope_json) if sub.envelope_json else None
        verdict = for_bytes(verdict, sub.sha256, envelope.payload_sha256 if envelope else None)
        if verdict.ok:
            # re-checked under the project lock: another partner's first acceptance may
            # have fixed the secret, or the admin may have changed the policy meanwhile
            if project.key_check_value not in (None, verdict.key_check_value):
                verdict = Verdict(False, "wrong_secret", (
                    f"the extract was hashed under a different secret (key check value "
                    f"{verdict.key_check_value}, the project's is {project.key_check_value})"
                ))  # fmt: skip
            elif envelope is None or envelope.policy_fingerprint != policy_fingerprint(
                disclosure_policy(project)
            ):
                verdict = Verdict(False, "policy_changed", (
                    "the project's disclosure policy changed while the submission waited: "
                    "review it and submit again"
                ))  # fmt: skip
        claimed = session.execute(
            update(Submission)
            .where(Submission.id == submission_id, Submission.status == "received")
            .values(
                status="accepted" if verdict.ok else "rejected",
                reason=None if verdict.ok else verdict.detail[:1000],
                decided_at=now,
                purged_at=None if verdict.ok else now,
                rows=verdict.rows if verdict.ok else sub.rows,
                # the enclave's own proof of what it accepted, checked by every run
                enclave_tag=acceptance_tag(key, sub, rows=verdict.rows) if verdict.ok else None,
            )
            .execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
        if not claimed:
            return  # another worker decided first
        if not verdict.ok:
            record(session, actor=actor, action="submission.rejected", outcome="rejected",
                   project_id=project.id, subject=submission_id,
                   details={"partner": partner_name, "version": sub.version,
                            "reason": verdict.reason, "message": verdict.detail,
                            "bytes": sub.bytes, "by": "enclave"})  # fmt: skip
        else:
            if project.key_check_value is None:
                project.key_check_value = verdict.key_check_value
            previous = (
                session.execute(
                    select(Submission).where(
                        Submission.project_id == project.id,
                        Submission.partner_id == sub.partner_id,
                        Submission.status == "accepted",
                        Submission.superseded_at.is_(None),
                        Submission.id != submission_id,
                        # a new period's extract leaves the last period's standing
                        Submission.period.is_(None)
                        if sub.period is None
                        else Submission.period == sub.period,
                    )
                )
                .scalars()
                .all()
            )
            for old in previous:
                old.superseded_at = now
                record(session, actor=actor, action="submission.superseded",
                       project_id=project.id, subject=old.id,
                       details={"version": old.version, "by_version": sub.version})  # fmt: skip
            record(
                session,
                actor=actor,
                action="submission.accepted",
                project_id=project.id,
                subject=submission_id,
                details={
                    "partner": partner_name,
                    "version": sub.version,
                    "rows": verdict.rows,
                    "rows_rejected_by_partner": verdict.rows_rejected,
                    "bytes": sub.bytes,
                    "sha256": sub.sha256,
                    "key_check_value": verdict.key_check_value,
                    "policy_fingerprint": envelope.policy_fingerprint if envelope else None,
                    "tool_version": verdict.tool_version,
                },
            )
        blob = settings.data_dir / sub.blob_path
    if not verdict.ok:
        blob.unlink(missing_ok=True)  # nothing of a rejected file is kept
    log("submission judged", submission=submission_id,
        verdict="accepted" if verdict.ok else "rejected", reason=verdict.reason,
        validator_peak_rss_mb=verdict.peak_rss_mb)  # fmt: skip
