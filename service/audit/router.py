"""HTTP routes of the audit log (DPO only; the public key is public)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from datetime import datetime
from typing import Any, Literal

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from service.api.deps import (
    AppState,
    AsyncCaller,
    Caller,
    ReadSession,
    State,
    app_state,
    in_db_slot,
    require_role,
)
from service.audit import Actor, record
from service.audit.heads import VerifiedHeads
from service.audit.review import AuditFilter, export_csv, export_jsonl, page_json, verify
from service.audit.signer import request_checkpoint, signed_seq
from service.crypto import public_key_hex
from service.errors import error_responses

router = APIRouter(
    prefix="/v1/audit", tags=["audit"], responses=error_responses(400, 401, 403, 404, 409, 422)
)
DPO = ("dpo",)
HEADS = VerifiedHeads()  # this process's last verified head: page loads verify only what is new


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
    unsigned_tail: int = Field(description="events after the last signed checkpoint (amber)")
    warning: str | None
    summary: str


@router.get("", response_model=AuditPage)
async def list_events(
    request: Request,
    caller: AsyncCaller,
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
) -> Response:
    """Audit events, newest first, filtered and paginated (DPO)."""
    state = app_state(request)  # not a dependency: see app_state
    require_role(state, caller, "read the audit log", *DPO)
    where = AuditFilter(project, actor, action, outcome, since, until)
    # async, with one trip to the threadpool for the query: a sync route with sync
    # dependencies took three (token, session, route), and handing work to threads was
    # the largest cost of a page under load (benchmarks/bench_load.py); the same page
    # asked for meanwhile shares the trip until its read begins
    body = await state.page_reads.read(
        page_key(where, limit, before),
        lambda begin: in_db_slot(state, _page_json, state, where, limit, before, begin),
    )
    # built from each event's JSON as kept (the same bytes AuditPage would serialise)
    return Response(body, media_type="application/json")


def page_key(where: AuditFilter, limit: int, before: int | None) -> Hashable:
    """What makes two requests ask for the same page. The filter's repr, not the filter:
    equal instants in different time zones compare equal, yet bind different text."""
    return repr(where), limit, before


def _page_json(
    state: AppState, where: AuditFilter, limit: int, before: int | None, begin: Callable[[], None]
) -> bytes:
    begin()  # before the snapshot: a request for this page from now on waits for the next
    with state.db.snapshot() as session:
        return page_json(session, where, limit=limit, before=before, known=state.event_json)


@router.get("/verify", response_model=Verification)
def verify_chain(
    state: State,
    caller: Caller,  # first: checking the token takes and returns its own connection
    session: ReadSession,
    full: bool = Query(False, description="re-walk the whole log, not just what is new"),
) -> Verification:
    """Check the hash chain and the signed checkpoints (DPO).

    Incremental: from the last head this server verified. This is a convenience view run
    by the operator's server; the proof that does not trust the operator is ``pprl audit
    verify``, which checks an export on the DPO's machine against the DPO's receipt.
    """
    require_role(state, caller, "verify the audit log", *DPO)
    report = (
        verify(session, state.audit_public_key)
        if full
        else HEADS.verify(session, state.audit_public_key, state.db.url)
    )
    return Verification(**report.as_dict())


def _request_checkpoint(state: AppState, who: str, action: str, details: dict[str, Any]) -> int:
    with state.db.transaction() as session:  # committed before waiting for the signer
        record(session, actor=Actor(who, "dpo"), action=action, details=details)
        return request_checkpoint(session, who)


async def _await_signer(state: AppState, request_id: int) -> int | None:
    """Wait (holding no thread and no database slot) for the signer to sign the head."""
    deadline = anyio.current_time() + state.settings.checkpoint_wait_seconds
    while True:
        seq = await in_db_slot(state, _signed, state, request_id)
        if seq is not None or anyio.current_time() >= deadline:
            return seq
        await anyio.sleep(0.1)


def _signed(state: AppState, request_id: int) -> int | None:
    with state.db.snapshot() as session:
        return signed_seq(session, request_id)


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
async def export(
    state: State,
    caller: AsyncCaller,
    format: Literal["jsonl", "csv"] = "jsonl",
    from_seq: int = Query(1, ge=1, le=2**63 - 1, description="events from this one on"),
) -> StreamingResponse:
    """The log with hashes and checkpoints, verifiable offline (DPO; audited).

    Ends with a checkpoint the signer signed for this export (waited for up to
    ``PPRL_CHECKPOINT_WAIT_SECONDS``; without a signer the tail is unsigned and
    ``pprl audit verify`` says so).
    """
    require_role(state, caller, "export the audit log", *DPO)
    details: dict[str, Any] = {"format": format}
    if from_seq > 1:
        details["from_seq"] = from_seq
    request_id = await in_db_slot(
        state, _request_checkpoint, state, caller.name, "audit.exported", details
    )
    await _await_signer(state, request_id)
    key = public_key_hex(state.audit_public_key)

    def body() -> Iterator[str]:
        # the request's session is closed once the response starts: read in our own
        # snapshot, which a slow download can hold without blocking any writer
        with state.db.snapshot() as reader:
            yield from (
                export_jsonl(reader, key, from_seq)
                if format == "jsonl"
                else export_csv(reader, key, from_seq)
            )

    media = "application/x-ndjson" if format == "jsonl" else "text/csv"
    return StreamingResponse(
        body(),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="pprl-audit.{format}"'},
    )


@router.post("/checkpoints", responses={202: {"description": "requested; not signed yet"}})
async def checkpoint(state: State, caller: AsyncCaller) -> Any:
    """Ask the signer to sign the current head now, and wait for it (DPO; audited).

    200 with the checkpoint once signed; 202 if the signer did not answer in time (the
    request stays queued and is signed when the signer is back).
    """
    require_role(state, caller, "sign audit checkpoints", *DPO)
    request_id = await in_db_slot(
        state, _request_checkpoint, state, caller.name, "audit.checkpoint_requested", {}
    )
    seq = await _await_signer(state, request_id)
    if seq is None:
        return JSONResponse({"status": "pending", "request": request_id}, status_code=202)
    return await in_db_slot(state, _checkpoint_row, state, seq)


def _checkpoint_row(state: AppState, seq: int) -> dict[str, Any]:
    from service.db.models import AuditCheckpoint

    with state.db.snapshot() as session:
        row = session.get(AuditCheckpoint, seq)
        if row is None:  # an empty log: nothing to sign
            return {"status": "signed", "seq": 0, "head_hash": None, "signature": None}
        return {"status": "signed", "seq": row.seq, "head_hash": row.head_hash,
                "signature": row.signature}  # fmt: skip


@router.get("/public-key")
def audit_public_key(state: State) -> dict[str, str]:
    """The Ed25519 key that verifies audit checkpoints (compare it out of band)."""
    return {"algorithm": "Ed25519", "public_key_hex": public_key_hex(state.audit_public_key)}
