"""Principals (token holders), their roles and project membership."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.audit import Actor, record
from service.auth.tokens import digest, new_token, same_digest
from service.db.models import Partner, PartnerProject, Principal, Project, ProjectMember
from service.errors import BadRequest, Conflict, NotFound, Unauthorized

__all__ = [
    "ROLES",
    "Authenticated",
    "authenticate",
    "authenticate_until",
    "create_principal",
    "is_member",
    "revoke_principal",
    "rotate_token",
]

ROLES = ("admin", "partner", "analyst", "dpo")


@dataclass(frozen=True)
class Authenticated:
    """The caller of a request, as far as authorisation needs to know."""

    id: str
    name: str
    role: str
    partner: str | None = None  # a partner token's organisation, as results name it

    @property
    def actor(self) -> Actor:
        return Actor(self.name, self.role)


def authenticate(session: Session, token: str | None) -> Authenticated:
    """The principal holding ``token``; :class:`Unauthorized` if none, revoked or expired."""
    return authenticate_until(session, token)[0]


def authenticate_until(
    session: Session, token: str | None
) -> tuple[Authenticated, datetime | None]:
    """:func:`authenticate`, and when the token expires (None: never)."""
    if not token:
        raise Unauthorized("missing bearer token (set PPRL_TOKEN or the Authorization header)")
    wanted = digest(token)
    # one query, plain columns (no ORM objects): this runs on every request
    row = session.execute(
        select(Principal.id, Principal.name, Principal.role, Principal.token_digest,
               Principal.revoked_at, Principal.expires_at, Partner.name)
        .outerjoin(Partner, Partner.id == Principal.partner_id)
        .where(Principal.token_digest == wanted)
    ).first()  # fmt: skip
    if row is None or not same_digest(row.token_digest, wanted):
        raise Unauthorized("unknown token")
    if row.revoked_at is not None:
        raise Unauthorized("this token has been revoked")
    expires = _aware(row.expires_at) if row.expires_at is not None else None
    if expires is not None and expires <= datetime.now(UTC):
        raise Unauthorized("this token has expired")
    return Authenticated(row.id, row.name, row.role, row[6]), expires


def _forget_tokens(session: Session) -> None:
    # now, and again once committed: a check that read the old row in between is then
    # not remembered either (service.auth.recent keeps a check only if no forgetting
    # happened while it ran)
    from sqlalchemy import event

    from service.auth.recent import forget_all

    forget_all()
    event.listen(session, "after_commit", lambda _session: forget_all(), once=True)


def _aware(moment: datetime) -> datetime:
    # SQLite returns naive datetimes; every stored time is UTC
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def create_principal(
    session: Session,
    *,
    name: str,
    role: str,
    by: Actor,
    projects: list[str] | None = None,
    expires_days: float | None = None,
    partner: str | None = None,
) -> tuple[Principal, str]:
    """Create a principal and its token; returns the row and the token (shown once).

    A partner token belongs to an organisation: ``partner`` names one registered with
    :func:`service.auth.partners.create_partner`; without it, the organisation of the
    same name as the token (registered now if new). The token joins the organisation's
    projects, and ``projects`` become the organisation's too.
    """
    from service.auth.partners import create_partner, find_partner, partner_projects

    if role not in ROLES:
        raise BadRequest(f"role {role!r} is not one of {', '.join(ROLES)}")
    if partner is not None and role != "partner":
        raise BadRequest("--partner applies only to tokens with role partner")
    name = name.strip()
    if not name or len(name) > 200:
        raise BadRequest("name must be 1-200 characters")
    if session.execute(select(Principal.id).where(Principal.name == name)).first():
        raise Conflict(f"a principal named {name!r} already exists")
    org: Partner | None = None
    if role == "partner":
        if partner is not None:
            org = find_partner(session, partner)
        else:
            org = session.execute(select(Partner).where(Partner.name == name)).scalar()
            if org is None:
                org = create_partner(session, name=name, by=by)
        joined = {p.id for p in partner_projects(session, org.id)}
        for ref in projects or []:
            project = find_project(session, ref)
            if project.id not in joined:
                session.add(PartnerProject(partner_id=org.id, project_id=project.id))
        projects = sorted({*(projects or []), *(p.id for p in partner_projects(session, org.id))})
    token = new_token()
    now = datetime.now(UTC)
    principal = Principal(
        id=str(uuid.uuid4()),
        name=name,
        role=role,
        token_digest=digest(token),
        created_at=now,
        expires_at=now + timedelta(days=expires_days) if expires_days else None,
        revoked_at=None,
        partner_id=org.id if org is not None else None,
    )
    session.add(principal)
    session.flush()
    added: set[str] = set()
    for ref in projects or []:
        project = find_project(session, ref)
        if project.id not in added:
            added.add(project.id)
            session.add(ProjectMember(project_id=project.id, principal_id=principal.id))
    record(
        session,
        actor=by,
        action="token.created",
        subject=name,
        details={
            "principal_id": principal.id,
            "role": role,
            "partner": org.name if org is not None else None,
            "projects": list(projects or []),
            "expires_at": principal.expires_at.isoformat() if principal.expires_at else None,
        },
    )
    return principal, token


def revoke_principal(session: Session, *, name_or_id: str, by: Actor) -> Principal:
    """Revoke a principal's token (idempotent; the row stays for the audit trail)."""
    row = session.execute(
        select(Principal).where((Principal.id == name_or_id) | (Principal.name == name_or_id))
    ).scalar()
    if row is None:
        raise NotFound(f"no principal {name_or_id!r}")
    if row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
        _forget_tokens(session)
        record(session, actor=by, action="token.revoked", subject=row.name,
               details={"principal_id": row.id, "role": row.role})  # fmt: skip
    return row


def rotate_token(
    session: Session, *, name_or_id: str, by: Actor, expires_days: float | None = None
) -> tuple[Principal, str]:
    """Issue a fresh token to a principal; the old one stops working at once.

    The principal keeps its id, role, organisation, memberships, submissions and
    history: only the token changes (audited as ``token.rotated``). A revoked principal
    is not revived: issue a new token to its partner instead.
    """
    row = session.execute(
        select(Principal).where((Principal.id == name_or_id) | (Principal.name == name_or_id))
    ).scalar()
    if row is None:
        raise NotFound(f"no principal {name_or_id!r}")
    if row.revoked_at is not None:
        raise Conflict(
            f"{row.name!r} is revoked; issue a new token with `pprl admin token create` "
            "(for a partner: --partner ORGANISATION keeps it the same partner)"
        )
    token = new_token()
    row.token_digest = digest(token)
    _forget_tokens(session)
    if expires_days is not None:
        row.expires_at = datetime.now(UTC) + timedelta(days=expires_days)
    record(session, actor=by, action="token.rotated", subject=row.name,
           details={"principal_id": row.id, "role": row.role,
                    "expires_at": row.expires_at.isoformat() if row.expires_at else None})  # fmt: skip
    return row, token


def find_project(session: Session, ref: str) -> Project:
    """A project by id or name."""
    row = session.execute(
        select(Project).where((Project.id == ref) | (Project.name == ref))
    ).scalar()
    if row is None:
        raise NotFound(f"no project {ref!r}")
    return row


def is_member(session: Session, project_id: str, principal_id: str) -> bool:
    return (
        session.execute(
            select(ProjectMember.principal_id).where(
                ProjectMember.project_id == project_id,
                ProjectMember.principal_id == principal_id,
            )
        ).first()
        is not None
    )
