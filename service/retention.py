"""Retention and storage bounds for sealed submissions.

- Submissions past their project's retention are deleted (:func:`purge_expired`).
- Superseded and rejected submissions are deleted once ``PPRL_SUPERSEDED_GRACE_HOURS``
  have passed: a partner that resubmits 4 GiB again and again does not keep every copy.
- A partner holds at most ``PPRL_PARTNER_QUOTA_BYTES`` of sealed bytes per project, its
  not-yet-purged superseded copies included (:func:`check_quota`, before the body is read).

The database row stays (with ``purged_at``) so the DPO can see what was held and when it
went; each purge is an audit event. Released results are aggregates and are kept.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.audit import Actor, record
from service.db import Database
from service.db.models import Project, Submission
from service.errors import PayloadTooLarge
from service.settings import Settings

__all__ = ["QuotaExceeded", "check_quota", "held_bytes", "purge_expired"]


class QuotaExceeded(PayloadTooLarge):
    """413: the upload would take the partner past its storage quota in the project."""

    reason = "quota"


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def held_bytes(session: Session, project_id: str, partner_id: str) -> int:
    """Sealed bytes the partner holds in the project (every blob not yet purged)."""
    total = session.execute(
        select(func.coalesce(func.sum(Submission.bytes), 0)).where(
            Submission.project_id == project_id,
            Submission.partner_id == partner_id,
            Submission.purged_at.is_(None),
        )
    ).scalar_one()
    return int(total)


def check_quota(
    session: Session, settings: Settings, project_id: str, partner_id: str, incoming: int
) -> None:
    """Refuse (413) an upload of ``incoming`` bytes that would exceed the partner's quota."""
    held = held_bytes(session, project_id, partner_id)
    quota = settings.partner_quota_bytes
    if held + incoming > quota:
        raise QuotaExceeded(
            f"this upload ({incoming} bytes) would take your organisation's stored submissions "
            f"in this project to {held + incoming} bytes, over its quota of {quota} bytes; "
            f"superseded submissions are purged {settings.superseded_grace_hours:g} h after "
            "they are replaced"
        )


def purge_expired(
    settings: Settings, db: Database, actor: Actor, now: datetime | None = None
) -> int:
    """Purge expired submissions, and superseded or rejected ones past their grace period;
    returns how many were purged."""
    now = now or datetime.now(UTC)
    grace = timedelta(hours=settings.superseded_grace_hours)
    purged = 0
    with db.transaction() as session:
        rows = session.execute(
            select(Submission, Project.retention_days)
            .join(Project, Project.id == Submission.project_id)
            .where(Submission.purged_at.is_(None))
        ).all()
        for sub, days in rows:
            received = _aware(sub.received_at)
            details: dict[str, float]
            decided = getattr(sub, "decided_at", None)
            if received + timedelta(days=days) <= now:
                why, details = "retention", {"retention_days": days}
            elif sub.superseded_at is not None and _aware(sub.superseded_at) + grace <= now:
                why, details = "superseded", {"grace_hours": settings.superseded_grace_hours}
            elif (
                getattr(sub, "status", None) == "rejected"
                and decided is not None
                and _aware(decided) + grace <= now
            ):
                why, details = "rejected", {"grace_hours": settings.superseded_grace_hours}
            else:
                continue
            (settings.data_dir / sub.blob_path).unlink(missing_ok=True)
            sub.purged_at = now
            record(session, actor=actor, action="submission.purged", project_id=sub.project_id,
                   subject=sub.id, details={"received_at": received.isoformat(), "why": why,
                                            "bytes": sub.bytes, **details})  # fmt: skip
            purged += 1
    return purged
