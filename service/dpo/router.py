"""The DPO's pages: sign in with a DPO token, the audit timeline, project pages.

Server-rendered with Jinja2 (autoescaped). The session is a signed cookie (Secure,
HttpOnly, SameSite=Strict); every form carries a CSRF token bound to the session (or,
for the sign-in form, to a pre-session nonce cookie). Only DPOs can sign in.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.templating import Jinja2Templates
from sqlalchemy import select

from service.api.deps import (
    AppState,
    State,
    db_slot,
    get_state,
)
from service.audit import Actor, record
from service.audit.review import AuditFilter, export_csv, export_jsonl, page
from service.audit.router import HEADS
from service.audit.signer import request_checkpoint, wait_for_checkpoint
from service.auth.partners import partner_names
from service.crypto import public_key_hex
from service.db.models import AuditEvent, Principal, Project, Run
from service.dpo import present
from service.dpo.present import member_organisations
from service.dpo.session import COOKIE, CSRF_COOKIE, Sessions
from service.dpo.signin import sessions, sign_in
from service.projects.service import members_of
from service.submissions.service import list_submissions

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
present.install(templates.env)  # plain-language filters: details, policy, spec, retention
router = APIRouter(prefix="/dpo", include_in_schema=False, dependencies=[Depends(db_slot)])
_COOKIE_OPTS: dict[str, Any] = {
    "secure": True,
    "httponly": True,
    "samesite": "strict",
    "path": "/dpo",
}


# the sign-in page shows one of these, chosen by code: never text from the URL
LOGIN_ERRORS = {
    "expired": "The form expired; please try again.",
    "invalid": "That is not a valid DPO token.",
    "too_many": "Too many failed sign-ins from this address; wait a minute.",
}
CHECKPOINT_NOTICES = {
    "signed": "A checkpoint of the current head was signed.",
    "pending": "Checkpoint requested; the signer has not answered yet (is the worker up?).",
}



def _signed_in(request: Request, state: AppState) -> Principal | None:
    """The DPO behind the request's server-side session, if it is still live."""
    with state.db.snapshot() as session:
        row = sessions(state).principal(session, request.cookies.get(COOKIE))
        if row is None:
            return None
        session.expunge(row)
        return row


def _verify(state: AppState, session: Any) -> Any:
    # incremental: only the events after the head this process verified last
    return HEADS.verify(session, state.audit_public_key, state.db.url)


def _to_login() -> RedirectResponse:
    return RedirectResponse("/dpo/login", status_code=303)


@router.get("/static/style.css")
def stylesheet() -> FileResponse:
    return FileResponse(HERE / "static" / "style.css", media_type="text/css")


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, error: str | None = None) -> Response:
    """The sign-in form; ``error`` is a code from a fixed set (unknown codes show nothing)."""
    nonce = Sessions.new_nonce()
    message = LOGIN_ERRORS.get(error or "")
    response = templates.TemplateResponse(
        request, "login.html", {"csrf": nonce, "error": message, "principal": None}
    )
    response.set_cookie(CSRF_COOKIE, nonce, max_age=900, **_COOKIE_OPTS)
    return response


@router.post("/login")
def login(request: Request, state: State, token: str = Form(""), csrf: str = Form("")) -> Response:
    """Sign in with a DPO token (audited; failures rate-limited per address)."""
    result = sign_in(state, request, token, csrf, role="dpo", label="DPO")
    if result.cookie is None:
        response = login_form(request, error=result.error)
        if result.error == "too_many":
            response.status_code = 429
        return response
    response = RedirectResponse("/dpo", status_code=303)
    response.set_cookie(COOKIE, result.cookie, max_age=result.lifetime, **_COOKIE_OPTS)
    response.delete_cookie(CSRF_COOKIE, path="/dpo")
    return response


@router.post("/logout")
def logout(request: Request, state: State, csrf: str = Form("")) -> Response:
    cookie = request.cookies.get(COOKIE)
    if not sessions(state).csrf_ok(cookie, csrf):
        return Response("invalid CSRF token", status_code=403)
    principal = _signed_in(request, state)
    with state.db.transaction() as session:  # the session ends on the server, not just here
        if sessions(state).end(session, cookie) and principal is not None:
            record(session, actor=Actor(principal.name, "dpo"), action="dpo.sign_out")
    response = _to_login()
    response.delete_cookie(COOKIE, path="/dpo")
    return response


def _date(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


@router.get("", response_class=HTMLResponse)
def timeline(
    request: Request,
    state: State,
    project: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    outcome: str | None = None,
    since: str | None = None,
    until: str | None = None,
    before: int | None = None,
    checkpoint: str | None = None,
) -> Response:
    """The audit timeline, filtered and paged, with the chain's state."""
    principal = _signed_in(request, state)
    if principal is None:
        return _to_login()
    until_at = _date(until + "T23:59:59") if until else None
    f = AuditFilter(
        project or None, actor or None, action or None, outcome or None, _date(since), until_at
    )
    # a snapshot: verifying a long chain must not hold the write lock meanwhile
    with state.db.snapshot() as session:
        events, total = page(session, f, limit=100, before=before)
        report = _verify(state, session)
        projects = list(session.execute(select(Project).order_by(Project.name)).scalars())
    next_before = events[-1]["seq"] if len(events) == 100 and events[-1]["seq"] > 1 else None
    params = {k: v for k, v in {"project": project, "actor": actor, "action": action, "outcome": outcome,
                                "since": since, "until": until, "before": next_before}.items() if v}  # fmt: skip
    return templates.TemplateResponse(request, "timeline.html", {
        "principal": principal, "csrf": sessions(state).csrf_for(request.cookies[COOKIE]),
        "events": events, "total": total, "report": report, "projects": projects, "f": f,
        "since": since, "until": until, "next_before": next_before, "next_url": "/dpo?" + urlencode(params),
        "notice": CHECKPOINT_NOTICES.get(checkpoint or ""),
    })  # fmt: skip


@router.get("/projects/{project_id}", response_class=HTMLResponse)
def project_page(request: Request, state: State, project_id: str) -> Response:
    principal = _signed_in(request, state)
    if principal is None:
        return _to_login()
    with state.db.snapshot() as session:  # the reads and the chain check hold no lock
        project = session.get(Project, project_id)
        if project is None:
            return Response("no such project", status_code=404)
        members = member_organisations(members_of(session, project.id),
                                       partner_names(session))  # fmt: skip
        submissions = list_submissions(session, project.id, None)
        runs = list(
            session.execute(
                select(Run).where(Run.project_id == project.id).order_by(Run.created_at)
            ).scalars()
        )
        names = {p.id: p.name for p in session.execute(select(Principal)).scalars()}
        release_rows = session.execute(
            select(AuditEvent).where(AuditEvent.project_id == project.id,
                                     AuditEvent.action.in_(("results.released", "results.read")))
            .order_by(AuditEvent.seq)
        ).scalars()  # fmt: skip
        releases = [{"seq": e.seq, "at": e.at, "action": e.action, "subject": e.subject,
                     "details": json.loads(e.details)} for e in release_rows]  # fmt: skip
        report = _verify(state, session)
        for run in runs:
            session.expunge(run)  # before the display name replaces the id: never written back
            run.requested_by = names.get(run.requested_by, run.requested_by)
    with state.db.transaction() as session:
        record(
            session,
            actor=Actor(principal.name, "dpo"),
            action="dpo.project_viewed",
            project_id=project.id,
        )
    return templates.TemplateResponse(request, "project.html", {
        "principal": principal, "csrf": sessions(state).csrf_for(request.cookies[COOKIE]), "project": project,
        "members": members, "submissions": submissions, "runs": runs, "releases": releases, "report": report,
    })  # fmt: skip


@router.get("/export")
def export(request: Request, state: State, format: str = "csv") -> Response:
    principal = _signed_in(request, state)
    if principal is None:
        return _to_login()
    fmt = "jsonl" if format == "jsonl" else "csv"
    with state.db.transaction() as session:
        record(
            session,
            actor=Actor(principal.name, "dpo"),
            action="audit.exported",
            details={"format": fmt},
        )
        request_id = request_checkpoint(session, principal.name)
    # the export ends with a checkpoint signed for it (unsigned tail if no signer answers)
    wait_for_checkpoint(state.db, request_id, state.settings.checkpoint_wait_seconds)
    key = public_key_hex(state.audit_public_key)

    def body() -> Iterator[str]:
        # a snapshot: a slow download must not hold the write lock
        with state.db.snapshot() as reader:
            yield from (export_jsonl(reader, key) if fmt == "jsonl" else export_csv(reader, key))

    return StreamingResponse(body(), media_type="text/csv" if fmt == "csv" else "application/x-ndjson",
                             headers={"Content-Disposition": f'attachment; filename="pprl-audit.{fmt}"'})  # fmt: skip


@router.post("/checkpoint")
def checkpoint(request: Request, state: State, csrf: str = Form("")) -> Response:
    """Ask the signer to sign the current head now (the page's button; audited)."""
    principal = _signed_in(request, state)
    if principal is None:
        return _to_login()
    if not sessions(state).csrf_ok(request.cookies.get(COOKIE), csrf):
        return Response("invalid CSRF token", status_code=403)
    with state.db.transaction() as session:
        record(session, actor=Actor(principal.name, "dpo"), action="audit.checkpoint_requested")
        request_id = request_checkpoint(session, principal.name)
    seq = wait_for_checkpoint(state.db, request_id, state.settings.checkpoint_wait_seconds)
    return RedirectResponse(
        f"/dpo?checkpoint={'pending' if seq is None else 'signed'}", status_code=303
    )


__all__ = ["get_state", "router"]
