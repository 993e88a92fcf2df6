"""HTTP routes of submissions: the sealed streaming upload and the partner's receipts."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid

from fastapi import APIRouter, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials

from service.api.deps import (
    AppState,
    AsyncCaller,
    Bearer,
    Caller,
    ReadSession,
    State,
    authenticate_request,
    in_db_slot,
    member_project,
)
from service.auth import Authenticated
from service.auth.partners import partner_name
from service.crypto.envelope import ENVELOPE_HEADER, SEALED_MEDIA_TYPE, Envelope, EnvelopeError
from service.errors import NotFound, PayloadTooLarge, Unprocessable, error_responses
from service.submissions import service
from service.submissions.schemas import SubmissionOut
from service.submissions.service import write_sidecar

router = APIRouter(
    prefix="/v1/projects/{project_id}/submissions",
    tags=["submissions"],
    responses=error_responses(400, 401, 403, 404, 409, 422),
)

_MAX_WAIT_SECONDS = 30.0
_WAIT_POLL_SECONDS = 0.02

_UPLOAD_BODY = {
    "parameters": [
        {
            "name": ENVELOPE_HEADER,
            "in": "header",
            "required": True,
            "description": "base64url of the envelope JSON (see service/crypto/envelope.py): "
            "spec, key check value, policy and enclave key fingerprints, rows, sealed size "
            'and SHA-256 (or "follows": then the body ends with the 32-byte SHA-256)',
            "schema": {"type": "string"},
        }
    ],
    "requestBody": {
        "required": True,
        "description": "The hashed extract sealed to the project's enclave key by `pprl "
        "submit`, as the raw body (followed by its raw SHA-256 when the envelope's "
        'sealed_sha256 is "follows"). The API never opens it.',
        "content": {SEALED_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
    },
}


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SubmissionOut,
    openapi_extra=_UPLOAD_BODY,
    responses={
        409: {"description": "identical to the current submission"},
        413: {"description": "larger than PPRL_MAX_UPLOAD_BYTES"},
        422: {"description": "the envelope does not fit the project, or the body not the envelope"},
    },
)
async def upload(
    project_id: str, request: Request, state: State, credentials: Bearer
) -> SubmissionOut:
    """Submit a sealed extract (partner): envelope checked, body stored, never opened.

    The receipt says ``received``; the enclave worker then opens and validates it and
    marks it ``accepted`` (superseding the partner's previous one) or ``rejected`` (poll
    ``GET .../submissions/{id}``). A refused or interrupted upload leaves nothing behind.
    """
    # database work takes a slot only while it runs, never while the body streams in
    caller, pid = await in_db_slot(
        state, _authorise_upload, state, credentials, request, project_id
    )

    async def audit_rejection(reason: str, detail: str, size: int) -> None:
        await in_db_slot(state, service.audit_rejection, state, caller, pid, reason, detail, size)

    try:
        envelope = Envelope.from_header(request.headers.get(ENVELOPE_HEADER))
    except EnvelopeError as exc:
        await audit_rejection("envelope", str(exc), 0)
        raise Unprocessable(str(exc)) from None
    limit = state.settings.max_upload_bytes
    if envelope.sealed_bytes > limit:
        await audit_rejection("too_large", "upload too large", envelope.sealed_bytes)
        raise PayloadTooLarge(
            f"the upload is {envelope.sealed_bytes:,} bytes; the limit is {limit:,}"
        )
    # refuse a wrong spec, secret, policy or key before reading a byte of the body
    await in_db_slot(state, service.check_envelope, state, caller, pid, envelope)
    declared = request.headers.get("content-length")
    expected = envelope.body_bytes  # the sealed payload, and the digests that follow it
    if declared is not None and declared.isdigit() and int(declared) != expected:
        detail = (
            f"the body is {int(declared):,} bytes but the envelope says "
            f"{expected:,}: upload with `pprl submit`"
        )
        await audit_rejection("size_mismatch", detail, int(declared))
        raise Unprocessable(detail)
    incoming = state.settings.incoming_dir
    incoming.mkdir(parents=True, exist_ok=True, mode=0o750)
    # the pid in the name lets a restarted server sweep uploads cut off by a crash
    target = incoming / f"{uuid.uuid4()}-{os.getpid()}.part"
    # the envelope beside it first: the enclave worker follows the body as it arrives
    # (service.worker.streaming); it holds nothing the worker may not see
    sidecar = write_sidecar(target, envelope)
    digest = hashlib.sha256()
    size = 0
    trailer = bytearray()  # the digests after the sealed payload, when they follow
    try:
        # group-readable: the enclave worker runs as another OS user in the API's group
        # (deploy/compose.yaml); the bytes are sealed, so reading them tells it nothing
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        with os.fdopen(fd, "wb") as fh:
            async for chunk in request.stream():
                size += len(chunk)
                if size > expected:
                    raise Unprocessable(
                        f"the body is longer than the {expected:,} bytes the envelope declares"
                    )
                # the part of this chunk that is payload (a chunk may end in the digests
                # or lie wholly within them: they can arrive in pieces)
                payload = len(chunk) - max(size - envelope.sealed_bytes, 0)
                if payload < len(chunk):
                    trailer += chunk[max(payload, 0) :]
                    chunk = chunk[: max(payload, 0)]
                digest.update(chunk)
                fh.write(chunk)
    except Unprocessable as exc:
        target.unlink(missing_ok=True)
        await audit_rejection("size_mismatch", exc.detail, size)
        raise
    except BaseException:
        # client went away mid-upload (or the server is stopping): leave nothing behind
        target.unlink(missing_ok=True)
        raise
    finally:
        sidecar.unlink(missing_ok=True)
    if size == expected:  # the digests that followed the body, filled in
        envelope = envelope.completed(bytes(trailer))
    if size != expected or digest.hexdigest() != envelope.sealed_sha256:
        target.unlink(missing_ok=True)
        detail = (
            "the body does not match its envelope (size or SHA-256 differ): it was altered "
            "or cut short on the way; submit again"
        )
        await audit_rejection("digest_mismatch", detail, size)
        raise Unprocessable(detail)
    # from here on the envelope is whole: recorded, audited and judged as if the digests
    # had come in the header (an identical resubmission is refused now, by the Parquet's)
    return await in_db_slot(state, service.receive_upload, state, caller, pid, target, envelope)


def _authorise_upload(
    state: AppState,
    credentials: HTTPAuthorizationCredentials | None,
    request: Request,
    project_id: str,
) -> tuple[Authenticated, str]:
    caller = authenticate_request(state, credentials, request)
    with state.db.transaction() as session:
        project = member_project(state, session, caller, project_id, "submit extracts",
                                 roles=("partner",))  # fmt: skip
        return caller, project.id


@router.get("", response_model=list[SubmissionOut])
def list_submissions(
    project_id: str, state: State, caller: Caller, session: ReadSession
) -> list[SubmissionOut]:
    """Submissions of a project: a partner sees its own; analysts and admins see all."""
    project = member_project(state, session, caller, project_id, "list submissions",
                             roles=("admin", "partner", "analyst"))  # fmt: skip
    own = caller.id if caller.role == "partner" else None
    return [_shown_to(caller, s) for s in service.list_submissions(session, project.id, own)]


@router.get("/{submission_id}", response_model=SubmissionOut)
async def get_submission(
    project_id: str,
    submission_id: str,
    state: State,
    caller: AsyncCaller,
    wait: float = Query(
        0.0,
        ge=0.0,
        le=_MAX_WAIT_SECONDS,
        description="while the submission is `received`, wait up to this many seconds "
        "for the enclave's verdict before answering (`pprl submit --wait` uses it)",
    ),
) -> SubmissionOut:
    """One submission's receipt and the enclave's verdict (a partner sees only its own).

    With ``wait``, the answer comes as soon as the verdict is recorded (looked for every
    20 ms, each look a short read in a database slot, none held in between) or when the
    wait is over, still ``received``: one request instead of a client polling, and the
    verdict within 20 ms of being recorded instead of within the client's poll."""
    deadline = time.monotonic() + wait
    while True:
        out = await in_db_slot(state, _receipt, state, caller, project_id, submission_id)
        if out.status != "received" or time.monotonic() >= deadline:
            return out
        await asyncio.sleep(_WAIT_POLL_SECONDS)


def _receipt(
    state: AppState, caller: Authenticated, project_id: str, submission_id: str
) -> SubmissionOut:
    with state.db.snapshot() as session:
        project = member_project(state, session, caller, project_id, "read submissions",
                                 roles=("admin", "partner", "analyst"))  # fmt: skip
        row = service.get_submission(session, project.id, submission_id)
        if caller.role == "partner" and row.partner_id != caller.id:
            raise NotFound(f"no submission {submission_id!r} in this project")
        out = service.submission_out(row, partner_name(session, row.partner_id))
    return _shown_to(caller, out)


def _shown_to(caller: Authenticated, out: SubmissionOut) -> SubmissionOut:
    """An analyst sees what a run will link (partner, version, period, verdict), not the
    sizes nor why a submission was rejected: an exact count of another partner's rows
    would change with one person, and a rejection's reason can quote counts of the
    extract (how many rows share one value)."""
    if caller.role != "analyst":
        return out
    return out.model_copy(
        update={"rows": None, "rows_rejected_by_partner": None, "bytes": None, "reason": None}
    )
