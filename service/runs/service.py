"""Run rules: queue a run, show it, hand out its released results (audited)."""

from __future__ import annotations

import gzip
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.audit import Actor, record
from service.db.models import Principal, Project, ProjectMember, Result, Run
from service.errors import Conflict, NotFound, TooManyRequests, Unprocessable
from service.projects.service import project_rules
from service.runs.schemas import RunCreate, RunOut
from service.submissions.periods import PeriodError, check_period

__all__ = [
    "Release",
    "check_run_allowed",
    "decide_release",
    "get_run",
    "held_release",
    "list_runs",
    "members_run",
    "queue_run",
    "read_event",
    "read_results",
    "release_of",
    "run_out",
]


def _menu(values: list[Any]) -> str:
    return ", ".join(str(v) for v in values)


def check_run_allowed(session: Session, project: Project, body: RunCreate) -> dict[str, Any]:
    """The run's parameters from the project's menu, if the project's run rate allows one
    more run now. Unprocessable outside the menu, TooManyRequests over the rate (both
    messages safe to show: they name the rule, never data)."""
    rules = project_rules(project)
    assert rules.match_thresholds and rules.frequent_thresholds
    if body.threshold is not None and body.threshold not in rules.match_thresholds:
        raise Unprocessable(
            f"threshold: {body.threshold} is not in this project's menu "
            f"({_menu(rules.match_thresholds)}), fixed when the project was created"
        )
    if body.frequent_threshold is not None and (
        body.frequent_threshold not in rules.frequent_thresholds
    ):
        raise Unprocessable(
            f"frequent_threshold: {body.frequent_threshold} is not in this project's menu "
            f"({_menu(rules.frequent_thresholds)}), fixed when the project was created"
        )
    try:
        period = check_period(body.period, project.period_scheme)
    except PeriodError as exc:
        raise Unprocessable(str(exc)) from None
    # lock the project row so two concurrent requests count each other (PostgreSQL;
    # SQLite's BEGIN IMMEDIATE already serialises writers)
    session.execute(select(Project.id).where(Project.id == project.id).with_for_update())
    since = datetime.now(UTC) - timedelta(hours=rules.period_hours)
    count, oldest = session.execute(
        select(func.count(Run.id), func.min(Run.created_at)).where(
            Run.project_id == project.id, Run.created_at >= since
        )
    ).one()
    if count >= rules.runs_per_period:
        oldest_at = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
        after = (oldest_at + timedelta(hours=rules.period_hours)).isoformat(timespec="seconds")
        raise TooManyRequests(
            f"this project has had {count} runs in the last {rules.period_hours} hours, its "
            f"limit; the next run can be queued after {after}"
        )
    chosen: dict[str, Any] = {
        "threshold": body.threshold if body.threshold is not None else rules.match_thresholds[0],
        "frequent_threshold": body.frequent_threshold
        if body.frequent_threshold is not None
        else rules.frequent_thresholds[0],
    }
    if period is not None:  # absent = the project's one period, as before periods
        chosen["period"] = period
    return chosen


def queue_run(
    session: Session,
    project: Project,
    body: RunCreate,
    *,
    by: Actor,
    by_id: str,
    params: dict[str, Any] | None = None,
) -> Run:
    """Queue a linkage run for the enclave worker (``params``: from check_run_allowed)."""
    params = params if params is not None else body.model_dump(exclude_none=True)
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
        period=params.get("period"),
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
        finished_at=run.finished_at, attempts=run.attempts, period=run.period,
    )  # fmt: skip


def get_run(session: Session, project_id: str, run_id: str) -> Run:
    run = session.get(Run, run_id)
    if run is None or run.project_id != project_id:
        raise NotFound(f"no run {run_id!r} in this project")
    return run


def members_run(session: Session, principal_id: str, project_ref: str, run_id: str) -> Run | None:
    """The run, if it belongs to the project (by id or name) and the principal is one of
    the project's members; else None. One query for the hot read path; a None is then
    explained by the separate checks, which audit the refusal."""
    return session.execute(
        select(Run)
        .join(Project, Project.id == Run.project_id)
        .join(ProjectMember, (ProjectMember.project_id == Project.id)
              & (ProjectMember.principal_id == principal_id))
        .where(Run.id == run_id, (Project.id == project_ref) | (Project.name == project_ref))
    ).scalar()  # fmt: skip


def list_runs(session: Session, project_id: str) -> list[Run]:
    return list(
        session.execute(
            select(Run).where(Run.project_id == project_id).order_by(Run.created_at)
        ).scalars()
    )


def read_results(session: Session, run: Run, *, by: Actor) -> dict[str, Any]:
    """The released figures of a finished run; every read is an audited release (written
    in ``session``'s transaction: for the pages; the API groups its reads' events)."""
    release = release_of(session, run)
    record(session, **read_event(run, release, by=by))
    released: dict[str, Any] = json.loads(release.body)
    return released


@dataclass(frozen=True)
class Release:
    """A finished run's release as served: the stored JSON bytes and what its read
    events name (digest, how many figures were shown and suppressed)."""

    body: bytes
    sha256: str
    figures_count: int
    suppressed: int
    gzipped: bytes  # the body compressed once, for clients that accept gzip

    @property
    def etag(self) -> str:
        return f'"{self.sha256}"'


def _check_readable(run: Run) -> None:
    if run.status == "awaiting_approval":
        raise Conflict(f"run {run.id} is waiting for an output checker's approval")
    if run.status != "done":
        raise Conflict(f"run {run.id} is {run.status}; results exist only for finished runs")


def release_of(session: Session, run: Run, known: Release | None = None) -> Release:
    """The release of a finished run, for :func:`read_event` (which the caller must write
    before sending it). ``known``: this run's release as loaded before; it is returned
    as it is, since a run's result row is written once by the worker and never changed
    (no code path updates or deletes it), and ``done`` is a final status."""
    _check_readable(run)
    if known is not None:
        return known
    result = session.get(Result, run.id)
    if result is None:  # pragma: no cover - done runs always have results
        raise NotFound("no results for this run")
    released: dict[str, Any] = json.loads(result.released_json)
    body = result.released_json.encode()
    return Release(
        body=body,
        sha256=hashlib.sha256(body).hexdigest(),  # = Result.sha256, from the bytes served
        figures_count=sum(1 for v in released["figures"].values() if v is not None),
        suppressed=len(released["suppressed"]),
        # figures only, nothing a caller chose: compressing it reveals nothing (no BREACH)
        gzipped=gzip.compress(body, compresslevel=6, mtime=0),
    )


def read_event(
    run: Run, release: Release, *, by: Actor, not_modified: bool = False
) -> dict[str, Any]:
    """The ``results.read`` event of serving ``release`` (keyword arguments of ``record``).

    The figure names are in the run's ``results.released`` event; a read names that
    release by digest rather than repeating hundreds of names in every event.
    """
    details: dict[str, Any] = {"to": by.name, "figures_count": release.figures_count,
                               "suppressed": release.suppressed,
                               "released_sha256": release.sha256}  # fmt: skip
    if not_modified:  # the client showed it holds this release already (If-None-Match)
        details["not_modified"] = True
    return {"actor": by, "action": "results.read", "project_id": run.project_id,
            "subject": run.id, "details": details}  # fmt: skip


def held_release(session: Session, run: Run, *, by: Actor) -> dict[str, Any]:
    """What a held run would release, for its output checker (audited)."""
    if run.status != "awaiting_approval":
        raise Conflict(f"run {run.id} is {run.status}; only a held release can be checked")
    result = session.get(Result, run.id)
    if result is None:  # pragma: no cover - held runs always have results
        raise NotFound("no results for this run")
    record(session, actor=by, action="results.checked", project_id=run.project_id,
           subject=run.id, details={"released_sha256": result.sha256})  # fmt: skip
    released: dict[str, Any] = json.loads(result.released_json)
    return released


def decide_release(session: Session, run: Run, *, approve: bool, reason: str, by: Actor) -> Run:
    """Approve (the analyst may now read it) or refuse a held release, audited."""
    if run.status != "awaiting_approval":
        raise Conflict(f"run {run.id} is {run.status}; only a held release can be decided")
    result = session.get(Result, run.id)
    assert result is not None
    released: dict[str, Any] = json.loads(result.released_json)
    run.status = "done" if approve else "refused"
    run.stage = run.status
    if not approve:
        run.message = "the release was refused by the project's output checker"
    record(session, actor=by, action="results.approved" if approve else "results.refused",
           project_id=run.project_id, subject=run.id,
           details={"reason": reason, "released_sha256": result.sha256})  # fmt: skip
    if approve:
        figures = released["figures"]
        record(session, actor=by, action="results.released", project_id=run.project_id,
               subject=run.id,
               details={"to": released.get("released_to"),
                        "figures": sorted(k for k, v in figures.items() if v is not None),
                        "suppressed": len(released["suppressed"]),
                        "released_sha256": result.sha256, "approved_by": by.name})  # fmt: skip
    return run
