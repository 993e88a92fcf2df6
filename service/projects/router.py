"""HTTP routes of projects (HTTP only: rules live in ``service.projects.service``)."""

from __future__ import annotations

from fastapi import APIRouter, status
from sqlalchemy import select

from service.api.deps import Caller, DbSession, ReadSession, State, member_project, require_role
from service.auth import find_project, is_member
from service.crypto.envelope import key_fingerprint
from service.db.models import Project
from service.errors import error_responses
from service.projects import service
from service.projects.policy import set_policy
from service.projects.schemas import MemberAdd, PolicySet, ProjectCreate, ProjectOut

router = APIRouter(
    prefix="/v1/projects",
    tags=["projects"],
    responses=error_responses(400, 401, 403, 404, 409, 422),
)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ProjectOut)
def create_project(
    body: ProjectCreate, state: State, caller: Caller, session: DbSession
) -> ProjectOut:
    """Create a linkage project (admin): purpose, legal basis, agreement, spec, policy, members."""
    require_role(state, caller, "create projects", "admin")
    project = service.create_project(
        session, body, by=caller.actor,
        enclave_key_fingerprint=key_fingerprint(state.enclave_public_key),
    )  # fmt: skip
    return service.project_out(session, project)


@router.get("", response_model=list[ProjectOut])
def list_projects(state: State, caller: Caller, session: ReadSession) -> list[ProjectOut]:
    """Projects the caller can see: all for admin and DPO, its own for partners and analysts."""
    rows = session.execute(select(Project).order_by(Project.created_at)).scalars()
    if caller.role not in ("admin", "dpo"):
        rows = (p for p in rows if is_member(session, p.id, caller.id))  # type: ignore[assignment]
    return [service.project_out(session, p) for p in rows]


@router.get("/{project_id}", response_model=ProjectOut)
def get_project(project_id: str, state: State, caller: Caller, session: ReadSession) -> ProjectOut:
    """One project's description (members see their own; admin and DPO see all)."""
    if caller.role == "dpo":
        project = find_project(session, project_id)
    else:
        project = member_project(state, session, caller, project_id, "read projects",
                                 roles=("admin", "partner", "analyst"))  # fmt: skip
    return service.project_out(session, project)


@router.post("/{project_id}/members", response_model=ProjectOut)
def add_member(
    project_id: str, body: MemberAdd, state: State, caller: Caller, session: DbSession
) -> ProjectOut:
    """Add a principal to a project (admin)."""
    project = member_project(state, session, caller, project_id, "manage members", roles=("admin",))
    service.add_member(session, project, body.principal, by=caller.actor)
    return service.project_out(session, project)


@router.put("/{project_id}/disclosure", response_model=ProjectOut)
def change_policy(
    project_id: str, body: PolicySet, state: State, caller: Caller, session: DbSession
) -> ProjectOut:
    """Change the disclosure policy (admin; audited). Partners must re-acknowledge it:
    their next upload names the new policy fingerprint, and until each has resubmitted
    the enclave will not release under the new policy."""
    project = member_project(state, session, caller, project_id, "change the disclosure policy",
                             roles=("admin",))  # fmt: skip
    set_policy(session, project, body.disclosure, by=caller.actor)
    return service.project_out(session, project)
