"""Receiving a sealed submission: check its envelope, verify the stored bytes, record it.

The API never opens a payload: it cannot (only the enclave worker holds the key). It
checks the clear envelope against the project (project, spec fingerprint, key check
value, disclosure-policy fingerprint, enclave key), streams the sealed body into
``incoming/``, verifies its size and SHA-256 against the envelope, moves it to
``submissions/<project>/<id>.sealed`` and records it as ``received`` with its audit
event. The enclave worker then opens and validates it (``service.worker.intake``) and
marks it ``accepted`` (superseding the partner's previous accepted one) or ``rejected``.
Whatever fails here, the temporary file is removed and the refusal is audited.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from linkage.spec import policy_fingerprint
from service.api.deps import AppState
from service.audit import record
from service.auth import Authenticated
from service.auth.partners import partner_label
from service.crypto.envelope import SIDECAR_SUFFIX, Envelope, format_fingerprint, key_fingerprint
from service.db.models import Partner, Principal, Project, Submission
from service.errors import Conflict, NotFound, TooManyRequests, Unprocessable
from service.processes import owned_by_other_live_process
from service.projects.limits import check_resubmission_rate, check_upload_rules
from service.projects.service import disclosure_policy
from service.retention import QuotaExceeded, check_quota
from service.settings import Settings
from service.submissions.periods import PeriodError, check_period
from service.submissions.schemas import SubmissionOut

__all__ = [
    "audit_rejection",
    "check_envelope",
    "current_accepted",
    "list_submissions",
    "receive_upload",
    "submission_out",
    "sweep_incoming",
    "write_sidecar",
]


def write_sidecar(part: Path, envelope: Envelope) -> Path:
    """Put ``envelope`` beside the upload ``part`` is about to receive (atomically, group
    readable like the body), for the enclave worker to follow it; returns its path."""
    sidecar = part.with_suffix(SIDECAR_SUFFIX)
    tmp = part.with_name(f".{part.stem}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(envelope.to_json())
        os.replace(tmp, sidecar)
    finally:
        tmp.unlink(missing_ok=True)
    return sidecar


def sweep_incoming(settings: Settings) -> int:
    """Remove partial uploads (and the envelopes beside them) left by server processes
    that no longer exist (kill -9)."""
    removed = 0
    incoming = settings.incoming_dir
    for path in incoming.glob("*") if incoming.is_dir() else []:
        if path.suffix not in (".part", SIDECAR_SUFFIX, ".tmp"):
            continue
        if owned_by_other_live_process(path.stem.lstrip(".")):
            continue
        path.unlink(missing_ok=True)
        removed += 1
    stale = time.time() - 3600  # another live process may be sealing a fresh one
    for path in settings.blobs_dir.glob("*/.*.partial") if settings.blobs_dir.is_dir() else []:
        if path.stat().st_mtime < stale:
            path.unlink(missing_ok=True)  # a seal cut off half way; its row was never written
            removed += 1
    return removed


def audit_rejection(
    state: AppState, caller: Authenticated, project_id: str, reason: str, detail: str, size: int
) -> None:
    """Record a refused upload in its own transaction (the upload itself left nothing)."""
    with state.db.transaction() as session:
        record(session, actor=caller.actor, action="submission.rejected", outcome="rejected",
               project_id=project_id, subject=caller.name,
               details={"reason": reason, "message": detail, "bytes": size})  # fmt: skip


class EnvelopeRefused(Unprocessable):
    """The envelope does not match the project; ``reason`` is the audit code."""

    def __init__(self, detail: str, reason: str) -> None:
        super().__init__(detail)
        self.reason = reason


def _match(
    state: AppState, session: Session, project: Project, caller_id: str, envelope: Envelope
) -> None:
    """Raise :class:`EnvelopeRefused` (or Conflict) if the envelope does not fit."""
    if envelope.project_id != project.id:
        raise EnvelopeRefused(
            "the upload was sealed for another project: run `pprl submit` with this project",
            "project_mismatch",
        )
    try:
        check_period(envelope.period, project.period_scheme)
    except PeriodError as exc:
        raise EnvelopeRefused(str(exc), "bad_period") from None
    enclave = key_fingerprint(state.enclave_public_key)
    pinned = project.enclave_key_fingerprint or enclave
    if envelope.enclave_key_fingerprint not in (enclave,) or pinned != enclave:
        raise EnvelopeRefused(
            "the upload was sealed to another enclave key (fingerprint "
            f"{format_fingerprint(envelope.enclave_key_fingerprint)[:19]}...); this project's "
            f"enclave key is {format_fingerprint(pinned)[:19]}...: fetch the key again and "
            "check its fingerprint with your project lead",
            "wrong_enclave_key",
        )
    if envelope.spec_fingerprint != project.spec_fingerprint:
        raise EnvelopeRefused(
            "the extract was hashed under a different spec (fingerprint "
            f"{envelope.spec_fingerprint[:19]}..., this project's is "
            f"{project.spec_fingerprint[:19]}...): hash it again with the project's spec",
            "spec_mismatch",
        )
    kcv = project.key_check_value
    if kcv is not None and envelope.key_check_value != kcv:
        raise EnvelopeRefused(
            f"the extract was hashed under a different secret (key check value "
            f"{envelope.key_check_value[:16]}, the project's is {kcv}): every partner must "
            "hash with the same project secret",
            "wrong_secret",
        )
    policy = policy_fingerprint(disclosure_policy(project))
    if envelope.policy_fingerprint != policy:
        raise EnvelopeRefused(
            "the project's disclosure policy has changed since you agreed to it (your upload "
            f"names {envelope.policy_fingerprint[:19]}..., the policy now in force is "
            f"{policy[:19]}...): review it with `pprl project show {project.name}` and submit "
            "again with --accept-policy to agree to it",
            "policy_changed",
        )
    current = current_accepted(session, project.id, caller_id)
    same_period = current is not None and current.period == (envelope.period or None)
    if current is not None and current.envelope_json and same_period:
        previous = Envelope.from_json(current.envelope_json)
        if previous.payload_sha256 == envelope.payload_sha256:
            raise Conflict(
                f"this file is identical to your current submission (version "
                f"{current.version}); nothing to do"
            )


def check_envelope(
    state: AppState, caller: Authenticated, project_id: str, envelope: Envelope
) -> None:
    """Refuse early, before a byte of the body is read; audits the refusal."""
    try:
        with state.db.snapshot() as session:
            project = _project(session, project_id)
            _match(state, session, project, caller.id, envelope)
            # minimum extract size and resubmission rate (service.projects.limits)
            check_upload_rules(session, project, caller.id, envelope.rows)
            # storage per partner, superseded copies included (service.retention)
            check_quota(session, state.settings, project_id, caller.id, envelope.sealed_bytes)
    except EnvelopeRefused as exc:
        audit_rejection(state, caller, project_id, exc.reason, exc.detail, envelope.sealed_bytes)
        raise
    except Conflict as exc:
        audit_rejection(state, caller, project_id, "duplicate", exc.detail, envelope.sealed_bytes)
        raise
    except (TooManyRequests, Unprocessable, QuotaExceeded) as exc:  # rules, quota
        reason = getattr(exc, "reason", "refused")
        audit_rejection(state, caller, project_id, reason, exc.detail, envelope.sealed_bytes)
        raise


def receive_upload(
    state: AppState, caller: Authenticated, project_id: str, upload: Path, envelope: Envelope
) -> SubmissionOut:
    """Store the verified sealed ``upload`` as ``received``; always removes ``upload``."""
    stored: Path | None = None
    committed = False
    try:
        submission_id = str(uuid.uuid4())
        directory = state.settings.blobs_dir / project_id
        directory.mkdir(parents=True, exist_ok=True)
        # the worker (same group, another user) reads the blobs and deletes rejected ones;
        # setgid keeps the group on what is created inside
        if directory.stat().st_uid == os.getuid():
            os.chmod(directory, 0o2770)  # noqa: S103 (group = the worker; blobs are sealed)
        # again now the body is in: the policy or the current submission may have moved
        # meanwhile (the enclave checks the policy once more at acceptance)
        check_envelope(state, caller, project_id, envelope)
        with state.db.transaction() as session:
            project = _project(session, project_id, lock=True)  # serialises versions
            check_resubmission_rate(session, project, caller.id)  # again, under the lock
            version = (
                session.execute(
                    select(func.max(Submission.version)).where(
                        Submission.project_id == project_id, Submission.partner_id == caller.id
                    )
                ).scalar()
                or 0
            ) + 1
            stored = directory / f"{submission_id}.sealed"
            os.replace(upload, stored)  # same file system: data dir
            row = Submission(
                id=submission_id,
                project_id=project_id,
                partner_id=caller.id,
                version=version,
                rows=envelope.rows,
                rows_rejected=envelope.rows_rejected,
                bytes=envelope.sealed_bytes,
                sha256=envelope.sealed_sha256,
                blob_path=str(stored.relative_to(state.settings.data_dir)),
                received_at=datetime.now(UTC),
                superseded_at=None,
                purged_at=None,
                status="received",
                policy_fingerprint=envelope.policy_fingerprint,
                envelope_json=envelope.to_json(),
                period=check_period(envelope.period, project.period_scheme),
            )
            session.add(row)
            record(
                session,
                actor=caller.actor,
                action="submission.received",
                project_id=project_id,
                subject=submission_id,
                details={
                    "partner": caller.partner or caller.name,  # the organisation (issue 14)
                    "version": version,
                    "rows_declared": envelope.rows,
                    "bytes": envelope.sealed_bytes,
                    "sealed_sha256": envelope.sealed_sha256,
                    "key_check_value": envelope.key_check_value,
                    "policy_fingerprint": envelope.policy_fingerprint,
                    "tool_version": envelope.tool_version,
                    "period": envelope.period or None,
                },
            )
            session.flush()
            receipt = submission_out(row, caller.partner or caller.name)
        committed = True
        return receipt
    finally:
        upload.unlink(missing_ok=True)
        if stored is not None and not committed:
            stored.unlink(missing_ok=True)


def _project(session: Session, project_id: str, lock: bool = False) -> Project:
    query = select(Project).where(Project.id == project_id)
    if lock:
        query = query.with_for_update()
    row = session.execute(query).scalar()
    if row is None:
        raise NotFound(f"no project {project_id!r}")
    return row


def current_accepted(session: Session, project_id: str, partner_id: str) -> Submission | None:
    """The partner's accepted, unsuperseded submission (the one a run links), if any."""
    return session.execute(
        select(Submission)
        .where(
            Submission.project_id == project_id,
            Submission.partner_id == partner_id,
            Submission.status == "accepted",
            Submission.superseded_at.is_(None),
        )
        .order_by(Submission.version.desc())
        .limit(1)
    ).scalar()


def submission_out(row: Submission, partner: str) -> SubmissionOut:
    """The receipt a partner sees: ``status`` is received, accepted or rejected."""
    current = row.status == "accepted" and row.superseded_at is None and row.purged_at is None
    return SubmissionOut(
        id=row.id,
        project_id=row.project_id,
        partner=partner,
        version=row.version,
        rows=row.rows,
        rows_rejected_by_partner=row.rows_rejected,
        bytes=row.bytes,
        sha256=row.sha256,
        received_at=row.received_at,
        superseded_at=row.superseded_at,
        purged_at=row.purged_at,
        status=row.status,
        reason=row.reason,
        decided_at=row.decided_at,
        current=current,
        policy_fingerprint=row.policy_fingerprint,
        period=row.period,
    )


def get_submission(session: Session, project_id: str, submission_id: str) -> Submission:
    row = session.get(Submission, submission_id)
    if row is None or row.project_id != project_id:
        raise NotFound(f"no submission {submission_id!r} in this project")
    return row


def list_submissions(
    session: Session, project_id: str, partner_id: str | None
) -> list[SubmissionOut]:
    query = (
        select(Submission, partner_label())  # the organisation's name (issue 14)
        .join(Principal, Principal.id == Submission.partner_id)
        .outerjoin(Partner, Partner.id == Principal.partner_id)
        .where(Submission.project_id == project_id)
        .order_by(Submission.received_at)
    )
    if partner_id is not None:
        query = query.where(Submission.partner_id == partner_id)
    return [submission_out(row, name) for row, name in session.execute(query)]
