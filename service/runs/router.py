"""HTTP routes of runs and their released results (analysts of the project)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response, status

from service.api.deps import (
    AppState,
    AsyncCaller,
    Caller,
    DbSession,
    ReadSession,
    State,
    app_state,
    audit_writer,
    deny,
    in_db_slot,
    member_project,
    member_project_id,
)
from service.auth import Authenticated, find_project, recent
from service.db.models import Project, Run
from service.errors import Forbidden, NotFound, ServiceError, error_responses
from service.projects.service import project_rules
from service.runs import service
from service.runs.schemas import Decision, RunCreate, RunOut

router = APIRouter(
    prefix="/v1/projects/{project_id}/runs",
    tags=["runs"],
    responses=error_responses(400, 401, 403, 404, 409, 422, 429),
)
ANALYSTS = ("analyst",)


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=RunOut)
def create_run(
    project_id: str, state: State, caller: Caller, session: DbSession, body: RunCreate | None = None
) -> RunOut:
    """Queue a linkage run of the project's current submissions (analyst)."""
    project = member_project(state, session, caller, project_id, "run linkage", roles=ANALYSTS)
    body = body or RunCreate()
    try:
        params = service.check_run_allowed(session, project, body)
    except ServiceError as exc:  # outside the menu (422) or over the rate (429): audited
        raise deny(state, exc, actor=caller.actor, action="run linkage",
                   project_id=project.id) from None  # fmt: skip
    run = service.queue_run(session, project, body, by=caller.actor, by_id=caller.id, params=params)
    session.flush()
    return service.run_out(session, run)


@router.get("", response_model=list[RunOut])
def list_runs(project_id: str, state: State, caller: Caller, session: ReadSession) -> list[RunOut]:
    """The project's runs, oldest first (analyst)."""
    project = member_project(state, session, caller, project_id, "list runs", roles=ANALYSTS)
    return [service.run_out(session, r) for r in service.list_runs(session, project.id)]


@router.get("/{run_id}", response_model=RunOut)
def get_run(
    project_id: str, run_id: str, state: State, caller: Caller, session: ReadSession
) -> RunOut:
    """A run's status, stage and progress (analyst)."""
    project = member_project(state, session, caller, project_id, "read runs", roles=ANALYSTS)
    return service.run_out(session, service.get_run(session, project.id, run_id))


def _release(
    state: AppState, caller: Authenticated, project_id: str, run_id: str
) -> tuple[Run, service.Release]:
    """The caller's run and its release, checked as every read is (role, membership,
    status); the release's bytes from memory after the first read."""
    with state.db.snapshot() as session:
        run = service.members_run(session, caller.id, project_id, run_id) if (
            caller.role in ANALYSTS) else None  # fmt: skip
        if run is None:  # refused or not found: the full checks name why (and audit it)
            project = member_project_id(state, session, caller, project_id, "read results",
                                        roles=ANALYSTS)  # fmt: skip
            run = service.get_run(session, project, run_id)
        release = service.release_of(session, run, state.releases.get(run.id))
        state.releases.put(run.id, release)
        session.expunge(run)
        return run, release


def _checked_release(
    state: AppState, caller: Authenticated, project_id: str, run_id: str,
    begin: Callable[[], None] | None,
) -> tuple[Run, service.Release]:  # fmt: skip
    """:func:`_release`, held as the caller's read grant; ``begin`` (of a shared check)
    is called before the database is read, so the check sees all its requests'."""
    if begin is not None:
        begin()
    since = recent.generation()
    found = _release(state, caller, project_id, run_id)
    state.read_grants.put((caller.id, project_id, run_id), found, since)
    return found


@router.get(
    "/{run_id}/results",
    responses={
        200: {"description": "the release", "content": {"application/json": {"schema": {"type": "object"}}}},
        304: {"description": "the release named by If-None-Match (its ETag, the release's sha256)"},
    },
)  # fmt: skip
async def get_results(
    project_id: str, run_id: str, request: Request, caller: AsyncCaller
) -> Response:
    """The released, disclosure-controlled figures of a finished run (analyst; audited).

    ``figures`` maps each figure name to its released value, ``null`` where suppressed.
    The ``ETag`` is the release's sha256; a read with ``If-None-Match`` naming it gets
    304 and no body, and is audited too. Either answer is sent only once its
    ``results.read`` event is committed.
    """
    state = app_state(request)  # not a dependency: see app_state
    grant = (caller.id, project_id, run_id)
    found = state.read_grants.get(grant)
    if found is None:  # checked in the database at most once a second per caller and run
        try:
            # the caller's reads that come while a check waits for its turn share it (when
            # the hold ran out under load, each of them checked for itself at once)
            found = await state.grant_checks.read(grant, lambda begin: in_db_slot(
                state, _checked_release, state, caller, project_id, run_id, begin))  # fmt: skip
        except ServiceError:
            # a refusal is not shared: each request is checked, refused and audited itself
            found = await in_db_slot(
                state, _checked_release, state, caller, project_id, run_id, None
            )
    run, release = found
    held = release.etag in request.headers.get("if-none-match", "")
    await audit_writer(state).record(
        **service.read_event(run, release, by=caller.actor, not_modified=held)
    )
    headers = {"ETag": release.etag, "Vary": "Accept-Encoding"}
    if held:
        return Response(status_code=304, headers=headers)
    if _accepts_gzip(request.headers.get("accept-encoding", "")):
        # a tenth of the bytes to encrypt and send; compressed once per release
        headers["Content-Encoding"] = "gzip"
        return Response(release.gzipped, media_type="application/json", headers=headers)
    return Response(release.body, media_type="application/json", headers=headers)


def _accepts_gzip(accept_encoding: str) -> bool:
    for item in accept_encoding.split(","):
        name, _, params = item.strip().partition(";")
        if name.strip().lower() == "gzip":
            return params.replace(" ", "").lower() not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def _checker_run(
    state: AppState, session: DbSession, caller: Authenticated, project_id: str, run_id: str,
    action: str,
) -> Run:  # fmt: skip
    """The run, if the caller may check its release: a DPO or the project's named output
    checker, and never the analyst who asked for it (403, audited)."""
    try:
        project: Project = find_project(session, project_id)
    except NotFound as exc:
        raise deny(state, exc, actor=caller.actor, action=action) from None
    checker = project_rules(project).output_checker
    run = service.get_run(session, project.id, run_id)
    if (caller.role != "dpo" and caller.name != checker) or caller.id == run.requested_by:
        raise deny(state, Forbidden(f"only a DPO or this project's output checker may {action}"),
                   actor=caller.actor, action=action, project_id=project.id)  # fmt: skip
    return run


@router.get("/{run_id}/approval")
def held_release(
    project_id: str, run_id: str, state: State, caller: Caller, session: DbSession
) -> dict[str, Any]:
    """The release a run is holding for approval (DPO or the project's output checker;
    audited). Same shape as the results."""
    run = _checker_run(state, session, caller, project_id, run_id, "check releases")
    return service.held_release(session, run, by=caller.actor)


@router.post("/{run_id}/approval", response_model=RunOut)
def decide_release(
    project_id: str, run_id: str, body: Decision, state: State, caller: Caller, session: DbSession
) -> RunOut:
    """Approve or refuse a held release (DPO or the project's output checker; audited).
    Approved, the analyst can read it; refused, never."""
    run = _checker_run(state, session, caller, project_id, run_id, "approve releases")
    service.decide_release(
        session, run, approve=body.decision == "approve", reason=body.reason, by=caller.actor
    )
    session.flush()
    return service.run_out(session, run)
