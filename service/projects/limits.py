"""Upload-side run rules: the minimum extract size and the resubmission rate limit.

Called by the upload path twice: early (before any work, so a refusal costs nothing)
and again in the transaction that records the submission, under the project row's lock,
so that concurrent uploads of one partner cannot both slip under the limit. The
enclave re-checks the real row count at run time (``service.worker.enclave``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.db.models import Project, Submission
from service.errors import TooManyRequests, Unprocessable
from service.projects.service import project_rules

__all__ = ["check_extract_size", "check_resubmission_rate", "check_upload_rules"]


def check_extract_size(project: Project, declared_rows: int) -> None:
    """Unprocessable if an extract declares fewer rows than the project's minimum."""
    minimum = project_rules(project).min_extract_rows
    if declared_rows < minimum:
        raise Unprocessable(
            f"the extract has {declared_rows:,} rows; this project needs at least {minimum:,} "
            "per partner, so that no figure rests on a handful of records"
        )


def check_resubmission_rate(session: Session, project: Project, partner_id: str) -> None:
    """TooManyRequests if the partner has used up its resubmissions of this period.

    A partner's first submission is never limited; every later one (any outcome the
    database recorded) counts against ``resubmissions_per_period``.
    """
    rules = project_rules(project)
    first = not session.execute(
        select(Submission.id).where(
            Submission.project_id == project.id, Submission.partner_id == partner_id
        )
    ).first()
    if first:
        return
    since = datetime.now(UTC) - timedelta(hours=rules.period_hours)
    count, oldest = session.execute(
        select(func.count(Submission.id), func.min(Submission.received_at)).where(
            Submission.project_id == project.id,
            Submission.partner_id == partner_id,
            Submission.version > 1,
            Submission.received_at >= since,
        )
    ).one()
    if count >= rules.resubmissions_per_period:
        if oldest is None:  # a limit of 0
            raise TooManyRequests("this project allows no resubmissions")
        oldest_at = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
        after = (oldest_at + timedelta(hours=rules.period_hours)).isoformat(timespec="seconds")
        raise TooManyRequests(
            f"you have resubmitted {count} times in the last {rules.period_hours} hours, this "
            f"project's limit; the next resubmission is accepted after {after}"
        )


def check_upload_rules(
    session: Session, project: Project, partner_id: str, declared_rows: int
) -> None:
    """Both upload rules; a refusal carries ``reason`` for the audit (``too_small`` or
    ``rate_limited``)."""
    try:
        check_extract_size(project, declared_rows)
    except Unprocessable as exc:
        exc.reason = "too_small"  # type: ignore[attr-defined]
        raise
    try:
        check_resubmission_rate(session, project, partner_id)
    except TooManyRequests as exc:
        exc.reason = "rate_limited"  # type: ignore[attr-defined]
        raise
