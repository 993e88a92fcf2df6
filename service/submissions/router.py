"""HTTP routes of submissions: the streaming upload and the partner's receipts."""

from __future__ import annotations

import hashlib
import os
import uuid

from fastapi import APIRouter, Request, status
from fastapi.security import HTTPAuthorizationCredentials

from service.api.deps import (
    AppState,
    Bearer,
    Caller,
    ReadSession,
    State,
    authenticate_request,
    in_db_slot,
    member_project,
)
from service.auth import Authenticated
from service.errors import (
    BadRequest,
    PayloadTooLarge,
    error_responses,
)
from service.submissions import service
from service.submissions.schemas import SubmissionOut

router = APIRouter(
    prefix="/v1/projects/{project_id}/submissions",
    tags=["submissions"],
    responses=error_responses(400, 401, 403, 404, 409, 422),
)

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": "The hashed Parquet extract written by `pprl hash`, as the raw body.",
        "content": {
            "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}}
        },
    }
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SubmissionOut,
    openapi_extra=_UPLOAD_BODY,
    responses={
        409: {"description": "identical to the current submission"},
        413: {"description": "larger than PPRL_MAX_UPLOAD_BYTES"},
        422: {"description": "not an acceptable hashed extract"},
    },
)
async def upload(
    project_id: str, request: Request, state: State, credentials: Bearer
) -> SubmissionOut:
    """Submit a hashed extract (partner). Streams to disk, validates, seals to the enclave.

    The previous submission of the same partner, if any, is superseded. A rejected or
    interrupted upload leaves nothing behind.
    """
    # database work takes a slot only while it runs, never while the body streams in
    caller, pid = await in_db_slot(
        state, _authorise_upload, state, credentials, request, project_id
    )

    async def audit_rejection(reason: str, detail: str, size: int) -> None:
        await in_db_slot(state, service.audit_rejection, state, caller, pid, reason, detail, size)

    limit = state.settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        await audit_rejection("too_large", "upload too large", int(declared))
        raise PayloadTooLarge(f"the upload is {int(declared):,} bytes; the limit is {limit:,}")
    state.settings.incoming_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    # the pid in the name lets a restarted server sweep uploads cut off by a crash
    target = state.settings.incoming_dir / f"{uuid.uuid4()}-{os.getpid()}.part"
    digest = hashlib.sha256()
    size = 0
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"the upload is larger than the limit of {limit:,} bytes")
                digest.update(chunk)
                fh.write(chunk)
    except PayloadTooLarge as exc:
        target.unlink(missing_ok=True)
        await audit_rejection("too_large", exc.detail, size)
        raise
    except BaseException:
        # client went away mid-upload (or the server is stopping): leave nothing behind
        target.unlink(missing_ok=True)
        raise
    if size == 0:
        target.unlink(missing_ok=True)
        await audit_rejection("empty", "the upload is empty", 0)
        raise BadRequest("the upload is empty: send the hashed Parquet file as the request body")
    return await in_db_slot(
        state, service.accept_upload, state, caller, pid, target, digest.hexdigest(), size
    )


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
    project_id: str, state: State, session: ReadSession, caller: Caller
) -> list[SubmissionOut]:
    """Submissions of a project: a partner sees its own; analysts and admins see all."""
    project = member_project(state, session, caller, project_id, "list submissions",
                             roles=("admin", "partner", "analyst"))  # fmt: skip
    own = caller.id if caller.role == "partner" else None
    return service.list_submissions(session, project.id, own)
