"""The DPO's pages: sign in with a DPO token, the audit timeline, project pages.

Server-rendered with Jinja2 (autoescaped). The session is a signed cookie (Secure,
HttpOnly, SameSite=Strict); every form carries a CSRF token bound to the session (or,
for the sign-in form, to a pre-session nonce cookie). Only DPOs can sign in.
"""

from __future__ import annotations

import json
import secrets
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

from service.api.deps import AppState, State, db_slot, get_state
from service.audit import Actor, record
from service.audit.review import AuditFilter, export_csv, export_jsonl, page, verify
from service.auth import authenticate
from service.crypto import public_key_hex
from service.db.models import AuditEvent, Principal, Project, Run
from service.dpo.session import COOKIE, CSRF_COOKIE, Sessions
from service.errors import Unauthorized
from service.projects.service import members_of
from service.submissions.service import list_submissions

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(prefix="/dpo", include_in_schema=False, dependencies=[Depends(db_slot)])
_COOKIE_OPTS: dict[str, Any] = {
    "secure": True,
    "httponly": True,
    "samesite": "strict",
    "path": "/dpo",
}


def sessions(state: AppState) -> Sessions:
    if not hasattr(state, "_dpo_sessions"):
        secret = state.settings.session_secret.get_secret_value().encode()
        if secret.startswith(b"development"):
            secret = secrets.token_bytes(32)  # development: sessions last as long as the process
        state._dpo_sessions = Sessions(secret)  # type: ignore[attr-defined]
    return state._dpo_sessions  # type: ignore[attr-defined,no-any-return]


def _signed_in(request: Request, state: AppState) -> Principal | None:
    principal_id = sessions(state).principal(request.cookies.get(COOKIE))
    if principal_id is None:
        return None
    with state.db.snapshot() as session:
        row = session.get(Principal, principal_id)
        if row is None or row.role != "dpo" or row.revoked_at is not None:
            return None
        session.expunge(row)
        return row


def _to_login() -> RedirectResponse:
    return RedirectResponse("/dpo/login", status_code=303)


@router.get("/static/style.css")
def stylesheet() -> FileResponse:
    return FileResponse(HERE / "static" / "style.css", media_type="text/css")


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, error: str | None = None) -> Response:
    nonce = Sessions.new_nonce()
    response = templates.TemplateResponse(
        request, "login.html", {"csrf": nonce, "error": error, "principal": None}
    )
    response.set_cookie(CSRF_COOKIE, nonce, max_age=900, **_COOKIE_OPTS)
    return response


@router.post("/login")
def login(request: Request, state: State, token: str = Form(""), csrf: str = Form("")) -> Response:
    nonce = request.cookies.get(CSRF_COOKIE)
    if not nonce or not secrets.compare_digest(nonce, csrf):
        return login_form(request, error="The form expired; please try again.")
    try:
        with state.db.transaction() as session:
            who = authenticate(session, token.strip())
    except Unauthorized:
        who = None
    if who is None or who.role != "dpo":
        with state.db.transaction() as session:
            record(session, actor=who.actor if who else Actor("anonymous", "none"), action="dpo.sign_in",
                   outcome="denied", details={"reason": "not a valid DPO token"})  # fmt: skip
        return login_form(request, error="That is not a valid DPO token.")
    with state.db.transaction() as session:
        record(session, actor=who.actor, action="dpo.sign_in")
    response = RedirectResponse("/dpo", status_code=303)
    response.set_cookie(
        COOKIE, sessions(state).issue(who.id), max_age=sessions(state).lifetime, **_COOKIE_OPTS
    )
    response.delete_cookie(CSRF_COOKIE, path="/dpo")
    return response


@router.post("/logout")
def logout(request: Request, state: State, csrf: str = Form("")) -> Response:
    cookie = request.cookies.get(COOKIE)
    if not sessions(state).csrf_ok(cookie, csrf):
        return Response("invalid CSRF token", status_code=403)
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
) -> Response:
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
        report = verify(session, state.audit_public_key)
        projects = list(session.execute(select(Project).order_by(Project.name)).scalars())
    next_before = events[-1]["seq"] if len(events) == 100 and events[-1]["seq"] > 1 else None
    params = {k: v for k, v in {"project": project, "actor": actor, "action": action, "outcome": outcome,
                                "since": since, "until": until, "before": next_before}.items() if v}  # fmt: skip
    return templates.TemplateResponse(request, "timeline.html", {
        "principal": principal, "csrf": sessions(state).csrf_for(request.cookies[COOKIE]),
        "events": events, "total": total, "report": report, "projects": projects, "f": f,
        "since": since, "until": until, "next_before": next_before, "next_url": "/dpo?" + urlencode(params),
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
        members = members_of(session, project.id)
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
        releases = [{"seq": e.seq, "at": e.at, "action": e.action, "details": json.loads(e.details)}
                    for e in release_rows]  # fmt: skip
        report = verify(session, state.audit_public_key)
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
    key = public_key_hex(state.audit_public_key)

    def body() -> Iterator[str]:
        # a snapshot: a slow download must not hold the write lock
        with state.db.snapshot() as reader:
            yield from (export_jsonl(reader, key) if fmt == "jsonl" else export_csv(reader, key))

    return StreamingResponse(body(), media_type="text/csv" if fmt == "csv" else "application/x-ndjson",
                             headers={"Content-Disposition": f'attachment; filename="pprl-audit.{fmt}"'})  # fmt: skip


__all__ = ["get_state", "router"]
