"""Partner organisations: a partner exists apart from its tokens.

A partner token belongs to one organisation; results, the DPO pages and the audit name
the organisation, so rotating a token, or issuing a new one to the same partner, keeps
one partner (``housing``) rather than two (``housing`` and ``housing-2``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from service.audit import Actor, record
from service.db.models import Partner, PartnerProject, Principal, Project
from service.errors import BadRequest, Conflict, NotFound

__all__ = [
    "create_partner",
    "find_partner",
    "one_per_partner",
    "partner_label",
    "partner_name",
    "partner_names",
    "partner_projects",
]

T = TypeVar("T")


def create_partner(
    session: Session, *, name: str, by: Actor, projects: Sequence[str] = ()
) -> Partner:
    """Register a partner organisation (audited) and the projects it takes part in."""
    from service.auth.principals import find_project

    name = name.strip()
    if not name or len(name) > 200:
        raise BadRequest("a partner name must be 1-200 characters")
    if session.execute(select(Partner.id).where(Partner.name == name)).first():
        raise Conflict(f"a partner named {name!r} already exists")
    partner = Partner(id=str(uuid.uuid4()), name=name, created_at=datetime.now(UTC),
                      created_by=by.name)  # fmt: skip
    session.add(partner)
    session.flush()
    joined = [find_project(session, ref) for ref in projects]
    for project in joined:
        session.add(PartnerProject(partner_id=partner.id, project_id=project.id))
    record(session, actor=by, action="partner.created", subject=name,
           details={"partner_id": partner.id, "projects": [p.name for p in joined]})  # fmt: skip
    return partner


def find_partner(session: Session, ref: str) -> Partner:
    """A partner organisation by name or id."""
    row = session.execute(
        select(Partner).where((Partner.id == ref) | (Partner.name == ref))
    ).scalar()
    if row is None:
        raise NotFound(
            f"no partner {ref!r}; register it with `pprl admin partner add {ref} --project P`"
        )
    return row


def partner_projects(session: Session, partner_id: str) -> list[Project]:
    """The projects a partner organisation takes part in."""
    return list(
        session.execute(
            select(Project)
            .join(PartnerProject, PartnerProject.project_id == Project.id)
            .where(PartnerProject.partner_id == partner_id)
            .order_by(Project.name)
        ).scalars()
    )


def partner_label() -> ColumnElement[Any]:
    """SQL for the name a submission's partner is shown under: its organisation's name
    (a principal from before organisations existed falls back to its own name). Use
    with ``.outerjoin(Partner, Partner.id == Principal.partner_id)``."""
    return func.coalesce(Partner.name, Principal.name)


def partner_names(session: Session) -> dict[str, str]:
    """Every partner organisation: id -> name."""
    return {p.id: p.name for p in session.execute(select(Partner)).scalars()}


def partner_name(session: Session, principal_id: str) -> str:
    """The name a principal's submissions are shown under: its organisation's, if any."""
    row = session.execute(
        select(partner_label())
        .select_from(Principal)
        .outerjoin(Partner, Partner.id == Principal.partner_id)
        .where(Principal.id == principal_id)
    ).scalar()
    return str(row) if row is not None else "?"


def one_per_partner(rows: Iterable[tuple[T, str]]) -> list[tuple[T, str]]:
    """Keep one row per partner label: the most recently received submission.

    Two tokens of one organisation (a rotation, a second machine) can each leave a
    current submission; linking both would count every person in them twice.
    """
    best: dict[str, tuple[T, str]] = {}
    for row, label in rows:
        current = best.get(label)
        if current is None or getattr(row, "received_at") > getattr(current[0], "received_at"):  # noqa: B009
            best[label] = (row, label)
    return [best[label] for label in sorted(best)]
