"""Run rules: queue a run, show it, hand out its released results (audited)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.audit import Actor, record
from service.db.models import Principal, Project, Result, Run
from service.errors import Conflict, NotFound
from service.runs.schemas import RunCreate, RunOut

__all__ = ["get_run", "list_runs", "queue_run", "read_results", "run_out"]


def queue_run(session: Session, project: Project, body: RunCreate, *, by: Actor, by_id: str) -> Run:
    """Queue a linkage run for the enclave worker."""
    params = body.model_dump(exclude_none=True)
    run = Run(
        id=str(uuid.uuid4()),
        project_id=project.id,
        requested_by=by_id,
        status="queued",
        stage="queued",
        progress=0.0,
        message=None,
        params_json=json.dumps(params, sort_keys=True),
        created_at=datetime.now(UTC),
        attempts=0,
    )
    session.add(run)
    record(session, actor=by, action="run.requested", project_id=project.id, subject=run.id,
           details={"params": params})  # fmt: skip
    return run


def run_out(session: Session, run: Run) -> RunOut:
    name = session.execute(select(Principal.name).where(Principal.id == run.requested_by)).scalar()
    return RunOut(
        id=run.id, project_id=run.project_id, requested_by=name or run.requested_by,
        status=run.status, stage=run.stage, progress=round(run.progress, 3), message=run.message,
        params=json.loads(run.params_json), created_at=run.created_at, started_at=run.started_at,
        finished_at=run.finished_at, attempts=run.attempts,
    )  # fmt: skip


def get_run(session: Session, project_id: str, run_id: str) -> Run:
    run = session.get(Run, run_id)
    if run is None or run.project_id != project_id:
        raise NotFound(f"no run {run_id!r} in this project")
    return run


def list_runs(session: Session, project_id: str) -> list[Run]:
    return list(
        session.execute(
            select(Run).where(Run.project_id == project_id).order_by(Run.created_at)
        ).scalars()
    )


def read_results(session: Session, run: Run, *, by: Actor) -> dict[str, Any]:
    """The released figures of a finished run; every read is an audited release."""
    if run.status != "done":
        raise Conflict(f"run {run.id} is {run.status}; results exist only for finished runs")
    result = session.get(Result, run.id)
    if result is None:  # pragma: no cover - done runs always have results
        raise NotFound("no results for this run")
    released: dict[str, Any] = json.loads(result.released_json)
    shown = sum(1 for v in released["figures"].values() if v is not None)
    # the figure names are in the run's results.released event; a read names that release
    # by digest rather than repeating hundreds of names in every event
    record(session, actor=by, action="results.read", project_id=run.project_id, subject=run.id,
           details={"to": by.name, "figures_count": shown, "suppressed": len(released["suppressed"]),
                    "released_sha256": result.sha256})  # fmt: skip
    return released
