"""Project rules: creation (spec validated by ``linkage.spec``), membership, views."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from linkage.errors import SpecError
from linkage.spec import DisclosurePolicy, Spec, fingerprint, parse_spec, policy_fingerprint
from service.audit import Actor, record
from service.db.models import Principal, Project, ProjectMember
from service.errors import BadRequest, Conflict, NotFound
from service.projects.policy import check_floor
from service.projects.rules import RunRules, resolve_rules, rules_in_words, run_rules
from service.projects.schemas import ProjectCreate, ProjectOut

__all__ = [
    "add_member",
    "create_project",
    "disclosure_policy",
    "project_out",
    "project_rules",
    "project_spec",
]


def _principal(session: Session, ref: str) -> Principal:
    row = session.execute(
        select(Principal).where((Principal.name == ref) | (Principal.id == ref))
    ).scalar()
    if row is None:
        raise BadRequest(f"members: no principal named {ref!r} (create its token first)")
    return row


def create_project(
    session: Session, body: ProjectCreate, *, by: Actor, enclave_key_fingerprint: str | None = None
) -> Project:
    """Validate the spec and policy, store the project and its members, audit it.

    ``enclave_key_fingerprint`` is the enclave key partners will pin for this project."""
    try:
        spec = parse_spec(body.spec, origin="spec")
    except SpecError as exc:
        raise BadRequest(str(exc)) from None
    policy = spec.disclosure
    if body.disclosure is not None:
        try:
            policy = DisclosurePolicy.model_validate(body.disclosure)
        except ValueError as exc:
            raise BadRequest(f"disclosure: {exc.errors()[0]['msg']}") from None  # type: ignore[attr-defined]
    check_floor(policy, "disclosure" if body.disclosure is not None else "spec.disclosure")
    if session.execute(select(Project.id).where(Project.name == body.name)).first():
        raise Conflict(f"a project named {body.name!r} already exists")
    rules = resolve_rules(body.run_rules or RunRules(), spec)
    checker = rules.output_checker
    if checker is not None and not session.execute(
        select(Principal.id).where(Principal.name == checker)
    ).first():
        raise BadRequest(f"run_rules.output_checker: no principal named {checker!r}")
    project = Project(
        id=str(uuid.uuid4()),
        name=body.name,
        purpose=body.purpose,
        legal_basis=body.legal_basis,
        agreement=body.agreement,
        spec_json=spec.canonical_json(),
        spec_fingerprint=fingerprint(spec),
        disclosure_json=policy.model_dump_json(),
        key_check_value=body.key_check_value,
        retention_days=body.retention_days,
        epsilon_spent=0.0,
        created_at=datetime.now(UTC),
        created_by=by.name,
        run_rules_json=rules.model_dump_json(),
        enclave_state_version=0,
        enclave_key_fingerprint=enclave_key_fingerprint,
        period_scheme=body.period_scheme,
    )
    session.add(project)
    session.flush()
    members = [_principal(session, ref) for ref in dict.fromkeys(body.members)]
    for member in members:
        session.add(ProjectMember(project_id=project.id, principal_id=member.id))
    record(
        session,
        actor=by,
        action="project.created",
        project_id=project.id,
        subject=project.name,
        details={
            "purpose": body.purpose,
            "legal_basis": body.legal_basis,
            "agreement": body.agreement,
            "spec_fingerprint": project.spec_fingerprint,
            "retention_days": body.retention_days,
            "disclosure": json.loads(project.disclosure_json),
            "members": [{"name": m.name, "role": m.role} for m in members],
            "run_rules": rules.model_dump(mode="json"),
            "policy_fingerprint": policy_fingerprint(policy),
            "enclave_key_fingerprint": enclave_key_fingerprint,
        },
    )
    return project


def add_member(session: Session, project: Project, ref: str, *, by: Actor) -> Principal:
    """Add a principal to a project (idempotent)."""
    principal = _principal(session, ref)
    exists = session.get(ProjectMember, (project.id, principal.id))
    if exists is None:
        session.add(ProjectMember(project_id=project.id, principal_id=principal.id))
        record(session, actor=by, action="project.member_added", project_id=project.id,
               subject=principal.name, details={"role": principal.role})  # fmt: skip
    return principal


def project_spec(project: Project) -> Spec:
    return parse_spec(project.spec_json)


def project_rules(project: Project) -> RunRules:
    """The project's run rules (menus resolved against its spec)."""
    return run_rules(project.run_rules_json, project_spec(project))


def project_rules_words(project: Project) -> list[str]:
    """The project's run rules in plain words (the DPO's project page)."""
    return rules_in_words(project_rules(project))


def disclosure_policy(project: Project) -> DisclosurePolicy:
    return DisclosurePolicy.model_validate_json(project.disclosure_json)


def members_of(session: Session, project_id: str) -> list[Principal]:
    return list(
        session.execute(
            select(Principal)
            .join(ProjectMember, ProjectMember.principal_id == Principal.id)
            .where(ProjectMember.project_id == project_id)
            .order_by(Principal.name)
        ).scalars()
    )


def project_out(session: Session, project: Project) -> ProjectOut:
    data: dict[str, Any] = {
        "id": project.id,
        "name": project.name,
        "purpose": project.purpose,
        "legal_basis": project.legal_basis,
        "agreement": project.agreement,
        "spec_fingerprint": project.spec_fingerprint,
        "key_check_value": project.key_check_value,
        "retention_days": project.retention_days,
        "disclosure": json.loads(project.disclosure_json),
        "spec": json.loads(project.spec_json),
        "members": [{"name": m.name, "role": m.role} for m in members_of(session, project.id)],
        "created_at": project.created_at,
        "created_by": project.created_by,
        "epsilon_spent": project.epsilon_spent,
        "run_rules": project_rules(project),
        "enclave_state_version": project.enclave_state_version,
        "policy_fingerprint": policy_fingerprint(disclosure_policy(project)),
        "enclave_key_fingerprint": project.enclave_key_fingerprint,
        "period_scheme": project.period_scheme,
    }
    return ProjectOut.model_validate(data)


def get_project(session: Session, project_id: str) -> Project:
    row = session.get(Project, project_id)
    if row is None:
        raise NotFound(f"no project {project_id!r}")
    return row
