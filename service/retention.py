"""Retention: sealed submissions past their project's retention are deleted.

The database row stays (with ``purged_at``) so the DPO can see what was held and when
it went; each purge is an audit event. Released results are aggregates and are kept.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from service.audit import Actor, record
from service.db import Database
from service.db.models import Project, Submission
from service.settings import Settings

__all__ = ["purge_expired"]


def purge_expired(
    settings: Settings, db: Database, actor: Actor, now: datetime | None = None
) -> int:
    """Purge every expired submission; returns how many were purged."""
    now = now or datetime.now(UTC)
    purged = 0
    with db.transaction() as session:
        rows = session.execute(
            select(Submission, Project.retention_days)
            .join(Project, Project.id == Submission.project_id)
            .where(Submission.purged_at.is_(None))
        ).all()
        for sub, days in rows:
            received = (
                sub.received_at if sub.received_at.tzinfo else sub.received_at.replace(tzinfo=UTC)
            )
            if received + timedelta(days=days) > now:
                continue
            (settings.data_dir / sub.blob_path).unlink(missing_ok=True)
            sub.purged_at = now
            record(session, actor=actor, action="submission.purged", project_id=sub.project_id,
                   subject=sub.id, details={"received_at": received.isoformat(), "retention_days": days})  # fmt: skip
            purged += 1
    return purged
