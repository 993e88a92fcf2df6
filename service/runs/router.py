"""HTTP routes of runs and their released results (analysts of the project)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from service.api.deps import Caller, DbSession, ReadSession, State, member_project
from service.errors import error_responses
from service.runs import service
from service.runs.schemas import RunCreate, RunOut

router = APIRouter(
    prefix="/v1/projects/{project_id}/runs",
    tags=["runs"],
    responses=error_responses(400, 401, 403, 404, 409, 422),
)
ANALYSTS = ("analyst",)


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=RunOut)
def create_run(
    project_id: str, state: State, session: DbSession, caller: Caller, body: RunCreate | None = None
) -> RunOut:
    """Queue a linkage run of the project's current submissions (analyst)."""
    project = member_project(state, session, caller, project_id, "run linkage", roles=ANALYSTS)
    run = service.queue_run(session, project, body or RunCreate(), by=caller.actor, by_id=caller.id)
    session.flush()
    return service.run_out(session, run)


@router.get("", response_model=list[RunOut])
def list_runs(project_id: str, state: State, session: ReadSession, caller: Caller) -> list[RunOut]:
    """The project's runs, oldest first (analyst)."""
    project = member_project(state, session, caller, project_id, "list runs", roles=ANALYSTS)
    return [service.run_out(session, r) for r in service.list_runs(session, project.id)]


@router.get("/{run_id}", response_model=RunOut)
def get_run(
    project_id: str, run_id: str, state: State, session: ReadSession, caller: Caller
) -> RunOut:
    """A run's status, stage and progress (analyst)."""
    project = member_project(state, session, caller, project_id, "read runs", roles=ANALYSTS)
    return service.run_out(session, service.get_run(session, project.id, run_id))


@router.get("/{run_id}/results")
def get_results(
    project_id: str, run_id: str, state: State, session: DbSession, caller: Caller
) -> dict[str, Any]:
    """The released, disclosure-controlled figures of a finished run (analyst; audited).

    ``figures`` maps each figure name to its released value, ``null`` where suppressed.
    """
    project = member_project(state, session, caller, project_id, "read results", roles=ANALYSTS)
    run = service.get_run(session, project.id, run_id)
    return service.read_results(session, run, by=caller.actor)
