"""HTTP routes for principals and their tokens (admin only)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, status
from pydantic import BaseModel, Field
from sqlalchemy import select

from service.api.bodies import RequestBody
from service.api.deps import Caller, DbSession, ReadSession, State, require_role
from service.auth import create_principal, revoke_principal
from service.auth.partners import partner_names
from service.db.models import Principal
from service.errors import error_responses

router = APIRouter(
    prefix="/v1/tokens", tags=["tokens"], responses=error_responses(400, 401, 403, 404, 409, 422)
)


class TokenCreate(RequestBody):
    name: str = Field(min_length=1, max_length=200)
    role: str = Field(pattern="^(admin|partner|analyst|dpo)$")
    projects: list[str] = Field(default_factory=list, description="project names or ids")
    expires_days: float | None = Field(None, gt=0, le=3650)
    partner: str | None = Field(
        None, max_length=200,
        description="partner tokens: the organisation (registered with `pprl admin partner add`)",
    )  # fmt: skip


class PrincipalOut(BaseModel):
    id: str
    name: str
    role: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    partner: str | None = Field(None, description="the organisation a partner token belongs to")


class TokenCreated(PrincipalOut):
    token: str = Field(description="shown once; only its SHA-256 digest is stored")


def _out(row: Principal, partners: dict[str, str] | None = None) -> dict[str, object]:
    out = {k: getattr(row, k) for k in PrincipalOut.model_fields if k != "partner"}
    out["partner"] = (partners or {}).get(row.partner_id or "")
    return out


@router.post("", status_code=status.HTTP_201_CREATED, response_model=TokenCreated)
def create_token(
    body: TokenCreate, state: State, caller: Caller, session: DbSession
) -> TokenCreated:
    """Create a principal with a role and print its bearer token once (admin)."""
    require_role(state, caller, "create tokens", "admin")
    row, token = create_principal(
        session, name=body.name, role=body.role, by=caller.actor, projects=body.projects,
        expires_days=body.expires_days, partner=body.partner,
    )  # fmt: skip
    return TokenCreated(**_out(row, partner_names(session)), token=token)


@router.get("", response_model=list[PrincipalOut])
def list_tokens(state: State, caller: Caller, session: ReadSession) -> list[PrincipalOut]:
    """Every principal (never a token or its digest) (admin)."""
    require_role(state, caller, "list tokens", "admin")
    rows = session.execute(select(Principal).order_by(Principal.created_at)).scalars()
    partners = partner_names(session)
    return [PrincipalOut.model_validate(_out(r, partners)) for r in rows]


@router.delete("/{principal}", response_model=PrincipalOut)
def revoke_token(principal: str, state: State, caller: Caller, session: DbSession) -> PrincipalOut:
    """Revoke a principal's token by name or id (admin)."""
    require_role(state, caller, "revoke tokens", "admin")
    row = revoke_principal(session, name_or_id=principal, by=caller.actor)
    return PrincipalOut.model_validate(_out(row, partner_names(session)))
