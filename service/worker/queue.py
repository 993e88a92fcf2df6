"""The run queue in the database: claim with a lease, renew it, finish exactly once.

A worker claims the oldest queued run, or a running one whose lease expired (its worker
died), with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL so several workers never take the
same run; SQLite's single writer does the same job there. Finishing is conditional on
still holding the lease, so a run completes exactly once even if a presumed-dead worker
comes back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update

from service.audit import Actor, record
from service.db import Database
from service.db.models import Principal, Result, Run

__all__ = ["Claim", "claim_next", "finish_failed", "finish_with_results", "renew"]


@dataclass(frozen=True)
class Claim:
    run_id: str
    project_id: str
    params: dict[str, Any]
    requested_by: str
    attempt: int


def _now() -> datetime:
    return datetime.now(UTC)


def claim_next(db: Database, worker: Actor, lease_seconds: int) -> Claim | None:
    """Take the next run (queued, or running with an expired lease), or None."""
    now = _now()
    with db.transaction() as session:
        run = session.execute(
            select(Run)
            .where(or_(Run.status == "queued", (Run.status == "running") & (Run.lease_until < now)))
            .order_by(Run.created_at)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).scalar()
        if run is None:
            return None
        resumed = run.status == "running"
        run.status, run.stage, run.progress = "running", "starting", 0.0
        run.worker_id = worker.name
        run.lease_until = now + timedelta(seconds=lease_seconds)
        run.started_at = now
        run.attempts += 1
        requester = session.get(Principal, run.requested_by)
        record(session, actor=worker, action="run.started", project_id=run.project_id,
               subject=run.id, details={"attempt": run.attempts, "after_lease_expiry": resumed})  # fmt: skip
        return Claim(run.id, run.project_id, json.loads(run.params_json),
                     requester.name if requester else run.requested_by, run.attempts)  # fmt: skip


def renew(
    db: Database, claim: Claim, worker: Actor, lease_seconds: int, stage: str, progress: float
) -> bool:
    """Extend the lease and record progress; False if the run is no longer ours."""
    with db.transaction() as session:
        result = session.execute(
            update(Run)
            .where(
                Run.id == claim.run_id,
                Run.worker_id == worker.name,
                Run.status == "running",
                Run.attempts == claim.attempt,
            )  # fmt: skip
            .values(
                lease_until=_now() + timedelta(seconds=lease_seconds),
                stage=stage[:60],
                progress=progress,
            )  # fmt: skip
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


def _ours(session: Any, claim: Claim, worker: Actor) -> Run | None:
    run: Run | None = session.execute(
        select(Run).where(Run.id == claim.run_id).with_for_update()
    ).scalar()
    if (
        run is None
        or run.status != "running"
        or run.worker_id != worker.name
        or run.attempts != claim.attempt
    ):
        return None
    return run


def finish_with_results(
    db: Database,
    claim: Claim,
    worker: Actor,
    released: dict[str, Any],
    epsilon_spent: float,
) -> bool:
    """Store the release, mark the run done and audit exactly what went to whom.

    All in one transaction, and only if the run is still ours: False otherwise.
    """
    from service.db.models import Project

    with db.transaction() as session:
        run = _ours(session, claim, worker)
        if run is None:
            return False
        now = _now()
        result = Result(
            run_id=run.id, released_json=json.dumps(released, sort_keys=True), created_at=now
        )
        session.add(result)
        run.status, run.stage, run.progress, run.finished_at = "done", "done", 1.0, now
        run.lease_until = None
        if epsilon_spent:
            project = session.get(Project, run.project_id)
            assert project is not None
            project.epsilon_spent += epsilon_spent
        figures = released["figures"]
        record(
            session,
            actor=worker,
            action="results.released",
            project_id=run.project_id,
            subject=run.id,
            details={
                "to": claim.requested_by,
                "figures": sorted(k for k, v in figures.items() if v is not None),
                "suppressed": len(released["suppressed"]),
                "policy": released["policy"],
                "epsilon_spent": epsilon_spent,
                # every later results.read names this digest instead of repeating the list
                "released_sha256": result.sha256,
            },
        )
        return True


def finish_failed(db: Database, claim: Claim, worker: Actor, message: str) -> None:
    """Mark the run failed with a message safe to show (no values), audited."""
    with db.transaction() as session:
        run = _ours(session, claim, worker)
        if run is None:
            return
        run.status, run.stage, run.message, run.finished_at = (
            "failed",
            "failed",
            message[:500],
            _now(),
        )
        run.lease_until = None
        record(session, actor=worker, action="run.failed", outcome="failed",
               project_id=run.project_id, subject=run.id, details={"message": message[:500]})  # fmt: skip
