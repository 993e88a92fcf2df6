"""The run queue in the database: claim with a lease, renew it, finish exactly once.

A worker claims the oldest queued run, or a running one whose lease expired (its worker
died), with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL so several workers never take the
same run; SQLite's single writer does the same job there. Finishing is conditional on
still holding the lease, so a run completes exactly once even if a presumed-dead worker
comes back.

Runs of one project are serialised: a project with a running run whose lease is live is
skipped, and the project row is locked while a run of it is claimed, so two workers
cannot start two runs of one project at once (its stability anchors and budget would
race). Under differential privacy the release's epsilon is reserved in the claiming
transaction by a conditional ``UPDATE ... WHERE epsilon_spent + e <= budget``; a run
that fails keeps its reservation spent (a refund would let failures be an oracle, and a
failure may have come after the data was looked at).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.audit import Actor, record
from service.db import Database
from service.db.models import AuditEvent, Principal, Project, Result, Run
from service.projects.service import disclosure_policy, project_rules

__all__ = [
    "Claim",
    "Finish",
    "claim_next",
    "finish_failed",
    "finish_with_results",
    "recorded_state_version",
    "renew",
]

_CANDIDATES = 20
#: how a finish went: stored (done or held for approval), lost the lease, the enclave
#: state moved under the run (another release committed first), or the release would
#: spend more epsilon than the claim reserved
Finish = Literal["done", "held", "lost", "state_moved", "unreserved"]


@dataclass(frozen=True)
class Claim:
    run_id: str
    project_id: str
    params: dict[str, Any]
    requested_by: str
    attempt: int
    state_version: int = 0
    epsilon_reserved: float = 0.0
    output_checking: bool = False
    #: set when the claim could not reserve the release's privacy budget
    refused: str | None = None


def _now() -> datetime:
    return datetime.now(UTC)


def _claimable(now: datetime) -> Any:
    return (Run.status == "queued") | ((Run.status == "running") & (Run.lease_until < now))


def _busy_projects(now: datetime) -> Any:
    """Projects with a run whose worker still holds a live lease."""
    return select(Run.project_id).where(Run.status == "running", Run.lease_until >= now)


def _dp_terms(project: Project) -> tuple[float, float] | None:
    """(epsilon per release, budget) when the project's policy uses differential privacy."""
    dp = getattr(disclosure_policy(project), "dp", None)
    if dp is None:
        return None
    return float(dp.epsilon_per_release), float(dp.epsilon_budget)


def _reserve(session: Session, project: Project, run: Run) -> str | None:
    """Reserve the release's epsilon (once per run); a safe refusal message if spent."""
    terms = _dp_terms(project)
    if terms is None or run.epsilon_reserved > 0:
        return None
    per_release, budget = terms
    reserved = session.execute(
        update(Project)
        .where(Project.id == project.id, Project.epsilon_spent + per_release <= budget + 1e-9)
        .values(epsilon_spent=Project.epsilon_spent + per_release)
        .execution_options(synchronize_session=False)
    )
    if not reserved.rowcount:  # type: ignore[attr-defined]
        left = max(budget - project.epsilon_spent, 0.0)
        return f"the project's privacy budget is spent ({left:.3g} epsilon left)"
    run.epsilon_reserved = per_release
    session.refresh(project)
    return None


def claim_next(db: Database, worker: Actor, lease_seconds: int) -> Claim | None:
    """Take the next run (queued, or running with an expired lease), or None.

    Skips projects that already have a live run; reserves the run's privacy budget.
    """
    now = _now()
    with db.transaction() as session:
        candidates = session.execute(
            select(Run.id, Run.project_id)
            .where(_claimable(now), Run.project_id.not_in(_busy_projects(now)))
            .order_by(Run.created_at)
            .limit(_CANDIDATES)
        ).all()
        for run_id, project_id in candidates:
            project = session.execute(
                select(Project).where(Project.id == project_id).with_for_update(skip_locked=True)
            ).scalar()
            if project is None:
                continue  # another worker is claiming (or finishing) a run of it
            # re-check under the project's lock: a run of it may have started meanwhile
            if session.execute(
                _busy_projects(now).where(Run.project_id == project_id).limit(1)
            ).first():
                continue
            run = session.execute(
                select(Run)
                .where(Run.id == run_id, _claimable(now))
                .with_for_update(skip_locked=True)
            ).scalar()
            if run is None:
                continue
            return _take(session, run, project, worker, now, lease_seconds)
        return None


def _take(
    session: Session, run: Run, project: Project, worker: Actor, now: datetime, lease_seconds: int
) -> Claim:
    resumed = run.status == "running"
    run.status, run.stage, run.progress = "running", "starting", 0.0
    run.worker_id = worker.name
    run.lease_until = now + timedelta(seconds=lease_seconds)
    run.started_at = now
    run.attempts += 1
    refused = _reserve(session, project, run)
    requester = session.get(Principal, run.requested_by)
    record(session, actor=worker, action="run.started", project_id=run.project_id,
           subject=run.id, details={"attempt": run.attempts, "after_lease_expiry": resumed,
                                    "epsilon_reserved": run.epsilon_reserved})  # fmt: skip
    return Claim(
        run.id,
        run.project_id,
        json.loads(run.params_json),
        requester.name if requester else run.requested_by,
        run.attempts,
        state_version=project.enclave_state_version,
        epsilon_reserved=run.epsilon_reserved,
        output_checking=project_rules(project).output_checking,
        refused=refused,
    )


def recorded_state_version(session: Session, project_id: str) -> int:
    """The enclave state version named by the project's last stored release in the audit
    log (0 if none). The log is hash-chained and append-only, so a database counter
    lowered by hand disagrees with it."""
    details = session.execute(
        select(AuditEvent.details)
        .where(
            AuditEvent.project_id == project_id,
            AuditEvent.role == "enclave",
            AuditEvent.action.in_(("results.released", "results.held")),
        )
        .order_by(AuditEvent.seq.desc())
        .limit(1)
    ).scalar()
    if details is None:
        return 0
    return int(json.loads(details).get("state_version", 0))


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
) -> Finish:
    """Store the release, advance the enclave state version, audit what went to whom.

    All in one transaction, and only if the run is still ours ("lost" otherwise) and no
    other release of the project committed since the claim ("state_moved"). Under
    output checking the release is held (status ``awaiting_approval``) until a DPO or the
    project's checker decides; the analyst sees nothing before.
    """
    with db.transaction() as session:
        run = _ours(session, claim, worker)
        if run is None:
            return "lost"
        if epsilon_spent > run.epsilon_reserved + 1e-9:  # the budget, re-checked at release
            return "unreserved"
        advanced = session.execute(
            update(Project)
            .where(
                Project.id == claim.project_id,
                Project.enclave_state_version == claim.state_version,
            )
            .values(enclave_state_version=claim.state_version + 1)
            .execution_options(synchronize_session=False)
        )
        if not advanced.rowcount:  # type: ignore[attr-defined]
            return "state_moved"
        now = _now()
        result = Result(
            run_id=run.id, released_json=json.dumps(released, sort_keys=True), created_at=now
        )
        session.add(result)
        held = claim.output_checking
        run.status = "awaiting_approval" if held else "done"
        run.stage, run.progress, run.finished_at = run.status, 1.0, now
        run.lease_until = None
        figures = released["figures"]
        record(
            session,
            actor=worker,
            action="results.held" if held else "results.released",
            project_id=run.project_id,
            subject=run.id,
            details={
                "to": claim.requested_by,
                "figures": sorted(k for k, v in figures.items() if v is not None),
                "suppressed": len(released["suppressed"]),
                "policy": released["policy"],
                "epsilon_spent": epsilon_spent,
                "epsilon_reserved": claim.epsilon_reserved,
                "state_version": claim.state_version + 1,
                # every later results.read names this digest instead of repeating the list
                "released_sha256": result.sha256,
            },
        )
        return "held" if held else "done"


def finish_failed(db: Database, claim: Claim, worker: Actor, message: str) -> None:
    """Mark the run failed with a message safe to show (no values), audited.

    A reserved epsilon stays spent (see the module docstring).
    """
    with db.transaction() as session:
        run = _ours(session, claim, worker)
        if run is None:
            return
        # progress ends at 1.0 as a release's does: how far a run got before it failed
        # could depend on the data (issue 12, attack 5)
        run.status, run.stage, run.progress, run.message, run.finished_at = (
            "failed",
            "failed",
            1.0,
            message[:500],
            _now(),
        )
        run.lease_until = None
        record(session, actor=worker, action="run.failed", outcome="failed",
               project_id=run.project_id, subject=run.id,
               details={"message": message[:500],
                        "epsilon_kept_spent": run.epsilon_reserved})  # fmt: skip
