"""HTTP routes of the audit log (DPO only; the public key is public)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from service.api.deps import Caller, DbSession, ReadSession, State, require_role
from service.audit import record
from service.audit.checkpoints import sign_checkpoint
from service.audit.review import AuditFilter, export_csv, export_jsonl, page, verify
from service.crypto import public_key_hex
from service.errors import error_responses

router = APIRouter(
    prefix="/v1/audit", tags=["audit"], responses=error_responses(400, 401, 403, 404, 409, 422)
)
DPO = ("dpo",)


class AuditEventOut(BaseModel):
    """One audit event exactly as hashed into the chain (``at`` is the hashed string)."""

    seq: int
    at: str = Field(description="ISO 8601 UTC")
    actor: str
    role: str
    action: str
    project_id: str | None
    subject: str | None
    outcome: str = Field(description="ok, denied, rejected or failed")
    details: dict[str, Any] = Field(description="aggregates and reasons only, never record values")
    request_id: str | None
    client: str | None
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    events: list[AuditEventOut]
    total: int
    next_before: int | None


class Verification(BaseModel):
    ok: bool
    events: int
    verified_up_to: int
    broken_at: int | None
    reason: str | None
    checkpoints_verified: int
    summary: str


@router.get("", response_model=AuditPage)
def list_events(
    state: State,
    session: ReadSession,
    caller: Caller,
    project: str | None = None,
    actor: str | None = None,
    action: str | None = Query(None, description="prefix, e.g. 'submission.'"),
    outcome: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = Query(100, ge=1, le=1000),
    before: int | None = Query(
        None, ge=1, le=2**63 - 1, description="page: events with seq below this"
    ),
) -> AuditPage:
    """Audit events, newest first, filtered and paginated (DPO)."""
    require_role(state, caller, "read the audit log", *DPO)
    events, total = page(session, AuditFilter(project, actor, action, outcome, since, until),
                         limit=limit, before=before)  # fmt: skip
    more = len(events) == limit and events[-1]["seq"] > 1
    return AuditPage(events=events, total=total, next_before=events[-1]["seq"] if more else None)


@router.get("/verify", response_model=Verification)
def verify_chain(state: State, session: ReadSession, caller: Caller) -> Verification:
    """Recompute the hash chain and check every signed checkpoint (DPO)."""
    require_role(state, caller, "verify the audit log", *DPO)
    report = verify(session, state.audit_public_key)
    return Verification(**report.__dict__, summary=report.summary())


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "the export",
            "content": {
                "application/x-ndjson": {"schema": {"type": "string"}},
                "text/csv": {"schema": {"type": "string"}},
            },
        }
    },
)
def export(
    state: State, caller: Caller, format: Literal["jsonl", "csv"] = "jsonl"
) -> StreamingResponse:
    """The whole log with hashes and checkpoints, verifiable offline (DPO; audited)."""
    require_role(state, caller, "export the audit log", *DPO)
    with state.db.transaction() as session:  # committed before the body streams
        record(session, actor=caller.actor, action="audit.exported", details={"format": format})
    key = public_key_hex(state.audit_public_key)

    def body() -> Iterator[str]:
        # the request's session is closed once the response starts: read in our own
        # snapshot, which a slow download can hold without blocking any writer
        with state.db.snapshot() as reader:
            yield from (export_jsonl(reader, key) if format == "jsonl" else export_csv(reader, key))

    media = "application/x-ndjson" if format == "jsonl" else "text/csv"
    return StreamingResponse(
        body(),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="pprl-audit.{format}"'},
    )


@router.post("/checkpoints")
def checkpoint(state: State, session: DbSession, caller: Caller) -> dict[str, Any]:
    """Sign a checkpoint of the current head now (DPO)."""
    require_role(state, caller, "sign audit checkpoints", *DPO)
    record(session, actor=caller.actor, action="audit.checkpoint_requested")
    if state.audit_signing_key is None:
        from service.errors import Conflict

        raise Conflict("this process has no audit signing key")
    row = sign_checkpoint(session, state.audit_signing_key, manual=True)
    return {"seq": row.seq, "head_hash": row.head_hash, "signature": row.signature}


@router.get("/public-key")
def audit_public_key(state: State) -> dict[str, str]:
    """The Ed25519 key that verifies audit checkpoints (compare it out of band)."""
    return {"algorithm": "Ed25519", "public_key_hex": public_key_hex(state.audit_public_key)}
