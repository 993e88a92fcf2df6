"""What a reader needs beside a release: which submission versions a run used."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db.models import Principal, Project, Run, Submission

__all__ = ["run_context", "submissions_used"]


def submissions_used(session: Session, run: Run) -> list[dict[str, Any]]:
    """Each partner's submission that was current when the run started: received before
    the run began and not superseded by then (the enclave links exactly those), of the
    run's period (intake supersedes within a period only)."""
    started = run.started_at or run.created_at
    period = getattr(run, "period", None)
    query = (
        select(Submission, Principal.name)
        .join(Principal, Principal.id == Submission.partner_id)
        .where(Submission.project_id == run.project_id, Submission.received_at <= started)
        .where(Submission.period.is_(None) if period is None else Submission.period == period)
        .order_by(Principal.name, Submission.version)
    )
    current: dict[str, dict[str, Any]] = {}
    for sub, name in session.execute(query):
        superseded = sub.superseded_at is not None and _naive(sub.superseded_at) <= _naive(started)
        if superseded or getattr(sub, "status", "accepted") != "accepted":
            continue
        current[name] = {"partner": name, "version": sub.version, "received_at": sub.received_at,
                         "period": sub.period}  # fmt: skip
    return list(current.values())


def _naive(moment: Any) -> Any:
    return moment.replace(tzinfo=None) if getattr(moment, "tzinfo", None) else moment


def run_context(session: Session, project: Project, run: Run) -> dict[str, Any]:
    """The run's requester, parameters and the submissions it used."""
    who = session.get(Principal, run.requested_by)
    import json

    return {
        "requested_by": who.name if who else "?",
        "params": json.loads(run.params_json or "{}"),
        "submissions": submissions_used(session, run),
    }
