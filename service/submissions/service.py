"""Accepting a submission: validate, seal to the enclave, record, supersede. All or nothing.

The upload arrives as a temporary file in ``incoming/`` (mode 0600). It is validated,
sealed to the enclave public key into ``submissions/<project>/<id>.sealed`` (atomically),
and recorded with its audit event in one transaction. Whatever fails, the temporary file
is removed, a sealed blob without its database row is removed, and a rejection is audited.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.api.deps import AppState
from service.audit import record
from service.auth import Authenticated
from service.crypto import seal_file
from service.db.models import Principal, Project, Submission
from service.errors import Conflict, NotFound, Unprocessable
from service.processes import owned_by_other_live_process
from service.projects.service import project_spec
from service.settings import Settings
from service.submissions.schemas import SubmissionOut
from service.submissions.validate import ExtractRejected, check_extract

__all__ = ["accept_upload", "audit_rejection", "submission_out", "sweep_incoming"]


def sweep_incoming(settings: Settings) -> int:
    """Remove partial uploads left by server processes that no longer exist (kill -9)."""
    removed = 0
    for path in settings.incoming_dir.glob("*.part") if settings.incoming_dir.is_dir() else []:
        if owned_by_other_live_process(path.stem):
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
    """Record a rejected upload in its own transaction (the upload itself left nothing)."""
    with state.db.transaction() as session:
        record(session, actor=caller.actor, action="submission.rejected", outcome="rejected",
               project_id=project_id, subject=caller.name,
               details={"reason": reason, "message": detail, "bytes": size})  # fmt: skip


def accept_upload(
    state: AppState, caller: Authenticated, project_id: str, upload: Path, sha256: str, size: int
) -> SubmissionOut:
    """Validate and seal ``upload``; returns the receipt. Always removes ``upload``."""
    sealed: Path | None = None
    committed = False
    try:
        with state.db.transaction() as session:
            project = _project(session, project_id)
            spec = project_spec(project)
            kcv = project.key_check_value
            current = _current(session, project_id, caller.id)
            duplicate = current.version if current and current.sha256 == sha256 else None
        if duplicate is not None:
            detail = (
                f"this file is identical to your current submission (version {duplicate}, "
                f"sha256 {sha256[:12]}...); nothing to do"
            )
            audit_rejection(state, caller, project_id, "duplicate", detail, size)
            raise Conflict(detail)
        try:
            check = check_extract(upload, spec, kcv)
        except ExtractRejected as exc:
            audit_rejection(state, caller, project_id, exc.reason, exc.detail, size)
            raise Unprocessable(exc.detail) from None

        submission_id = str(uuid.uuid4())
        directory = state.settings.blobs_dir / project_id
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        sealed = directory / f"{submission_id}.sealed"
        seal_file(upload, sealed, state.enclave_public_key, state.settings.upload_chunk_bytes)

        with state.db.transaction() as session:
            project = _project(session, project_id, lock=True)
            if project.key_check_value is None:
                project.key_check_value = check.manifest.key_check_value
            elif project.key_check_value != check.manifest.key_check_value:
                # another partner's first upload fixed a different secret meanwhile
                raise Unprocessable(
                    "the extract was hashed under a different secret than the project's"
                )
            now = datetime.now(UTC)
            previous = _current(session, project_id, caller.id)
            version = (
                session.execute(
                    select(func.max(Submission.version)).where(
                        Submission.project_id == project_id, Submission.partner_id == caller.id
                    )
                ).scalar()
                or 0
            ) + 1
            row = Submission(
                id=submission_id,
                project_id=project_id,
                partner_id=caller.id,
                version=version,
                rows=check.rows,
                rows_rejected=check.manifest.rows_rejected,
                bytes=size,
                sha256=sha256,
                blob_path=str(sealed.relative_to(state.settings.data_dir)),
                received_at=now,
                superseded_at=None,
                purged_at=None,
            )
            session.add(row)
            if previous is not None:
                previous.superseded_at = now
                record(session, actor=caller.actor, action="submission.superseded",
                       project_id=project_id, subject=previous.id,
                       details={"version": previous.version, "by_version": version})  # fmt: skip
            record(
                session,
                actor=caller.actor,
                action="submission.accepted",
                project_id=project_id,
                subject=submission_id,
                details={
                    "partner": caller.name,
                    "version": version,
                    "rows": check.rows,
                    "rows_rejected_by_partner": check.manifest.rows_rejected,
                    "bytes": size,
                    "sha256": sha256,
                    "key_check_value": check.manifest.key_check_value,
                    "tool_version": check.manifest.tool_version,
                },
            )
            session.flush()
            receipt = submission_out(row, caller.name)
        committed = True
        return receipt
    finally:
        upload.unlink(missing_ok=True)
        if sealed is not None and not committed:
            sealed.unlink(missing_ok=True)


def _project(session: Session, project_id: str, lock: bool = False) -> Project:
    query = select(Project).where(Project.id == project_id)
    if lock:
        query = query.with_for_update()
    row = session.execute(query).scalar()
    if row is None:
        raise NotFound(f"no project {project_id!r}")
    return row


def _current(session: Session, project_id: str, partner_id: str) -> Submission | None:
    return session.execute(
        select(Submission)
        .where(
            Submission.project_id == project_id,
            Submission.partner_id == partner_id,
            Submission.superseded_at.is_(None),
        )
        .order_by(Submission.version.desc())
        .limit(1)
    ).scalar()


def submission_out(row: Submission, partner: str) -> SubmissionOut:
    status = "purged" if row.purged_at else "superseded" if row.superseded_at else "current"
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
        status=status,
    )


def list_submissions(
    session: Session, project_id: str, partner_id: str | None
) -> list[SubmissionOut]:
    query = (
        select(Submission, Principal.name)
        .join(Principal, Principal.id == Submission.partner_id)
        .where(Submission.project_id == project_id)
        .order_by(Submission.received_at)
    )
    if partner_id is not None:
        query = query.where(Submission.partner_id == partner_id)
    return [submission_out(row, name) for row, name in session.execute(query)]
