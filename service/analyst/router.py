"""The analyst's pages: projects, runs, a run's released results with charts and downloads.

Signed in like the DPO pages, with the same server-side sessions and CSRF tokens
(:mod:`service.dpo.session`), under the analyst role and its own cookie path. Only
released (disclosure-controlled) figures are shown. Opening a run page or downloading
its tables is an audited ``results.read``, like the API; chart images of a run are
audited the first time this analyst reads that run and not again on every image.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.analyst.context import run_context, submissions_used
from service.api.deps import AppState, State, db_slot
from service.audit import Actor, record
from service.auth.principals import is_member
from service.db.models import AuditEvent, Principal, Project, ProjectMember, Result, Run
from service.dpo.session import CSRF_COOKIE, Sessions
from service.dpo.signin import sessions, sign_in
from service.errors import Conflict, NotFound
from service.results import (
    ChartError,
    available_charts,
    chart,
    csv_text,
    footnotes,
    policy_in_words,
    render,
    result_tables,
    xlsx_bytes,
)
from service.results.charts import FORMATS
from service.results.compare import compare, noise_band
from service.results.diagnostics import withheld_diagnostics
from service.results.maps import BoundariesError, choropleth, load_boundaries, mappable
from service.runs.service import read_results
from service.submissions.periods import label, period_key

__all__ = ["router"]

HERE = Path(__file__).parent
DPO_TEMPLATES = HERE.parent / "dpo" / "templates"
# one base layout for both sets of pages: the DPO's base.html, parameterised by area
templates = Jinja2Templates(directory=[str(HERE / "templates"), str(DPO_TEMPLATES)])
router = APIRouter(prefix="/analyst", include_in_schema=False, dependencies=[Depends(db_slot)])
COOKIE = "pprl_analyst"
_COOKIE_OPTS: dict[str, Any] = {
    "secure": True,
    "httponly": True,
    "samesite": "strict",
    "path": "/analyst",
}
LOGIN_ERRORS = {
    "expired": "The form expired; please try again.",
    "invalid": "That is not a valid analyst token.",
    "too_many": "Too many failed sign-ins from this address; wait a minute.",
}
AREA = {"area": "analyst", "area_title": "pprl · results for analysts", "role_label": "analyst",
        "home_url": "/analyst", "home_label": "projects", "logout_url": "/analyst/logout",
        "stylesheet": "/analyst/static/style.css"}  # fmt: skip


def _signed_in(request: Request, state: AppState) -> Principal | None:
    """The analyst behind the request's server-side session, if it is still live."""
    with state.db.snapshot() as session:
        row = sessions(state).principal(session, request.cookies.get(COOKIE), role="analyst")
        if row is None:
            return None
        session.expunge(row)
        return row


def _page(request: Request, name: str, principal: Principal | None, **context: Any) -> Response:
    csrf = sessions(state_of(request)).csrf_for(request.cookies[COOKIE]) if principal else ""
    return templates.TemplateResponse(
        request, name, {**AREA, "principal": principal, "csrf": csrf, **context}
    )


def state_of(request: Request) -> AppState:
    return request.app.state.pprl  # type: ignore[no-any-return]


def _to_login() -> RedirectResponse:
    return RedirectResponse("/analyst/login", status_code=303)


@router.get("/static/style.css")
def stylesheet() -> FileResponse:
    """The pages' one stylesheet (shared with the DPO pages)."""
    return FileResponse(DPO_TEMPLATES.parent / "static" / "style.css", media_type="text/css")


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, error: str | None = None) -> Response:
    """The sign-in form; ``error`` is a code from a fixed set (unknown codes show nothing)."""
    nonce = Sessions.new_nonce()
    response = templates.TemplateResponse(request, "login.html", {
        **AREA, "csrf": nonce, "error": LOGIN_ERRORS.get(error or ""), "principal": None,
        "login_url": "/analyst/login", "token_label": "Analyst token",
        "login_hint": "Use the analyst token your linkage operator gave you.",
    })  # fmt: skip
    response.set_cookie(CSRF_COOKIE, nonce, max_age=900, **_COOKIE_OPTS)
    return response


@router.post("/login")
def login(request: Request, state: State, token: str = Form(""), csrf: str = Form("")) -> Response:
    """Sign in with an analyst token (audited; failures rate-limited per address)."""
    result = sign_in(state, request, token, csrf, role="analyst", label="analyst")
    if result.cookie is None:
        response = login_form(request, error=result.error)
        if result.error == "too_many":
            response.status_code = 429
        return response
    response = RedirectResponse("/analyst", status_code=303)
    response.set_cookie(COOKIE, result.cookie, max_age=result.lifetime, **_COOKIE_OPTS)
    response.delete_cookie(CSRF_COOKIE, path="/analyst")
    return response


@router.post("/logout")
def logout(request: Request, state: State, csrf: str = Form("")) -> Response:
    """Sign out: the session ends on the server."""
    cookie = request.cookies.get(COOKIE)
    if not sessions(state).csrf_ok(cookie, csrf):
        return Response("invalid CSRF token", status_code=403)
    principal = _signed_in(request, state)
    with state.db.transaction() as session:
        if sessions(state).end(session, cookie) and principal is not None:
            record(session, actor=Actor(principal.name, "analyst"), action="analyst.sign_out")
    response = _to_login()
    response.delete_cookie(COOKIE, path="/analyst")
    return response


def _member_projects(session: Session, principal: Principal) -> list[Project]:
    query = (
        select(Project)
        .join(ProjectMember, ProjectMember.project_id == Project.id)
        .where(ProjectMember.principal_id == principal.id)
        .order_by(Project.name)
    )
    return list(session.execute(query).scalars())


def _project(session: Session, principal: Principal, project_id: str) -> Project:
    """The project if this analyst is a member; NotFound otherwise (existence never leaks)."""
    project = session.get(Project, project_id)
    if project is None or not is_member(session, project.id, principal.id):
        raise NotFound("no such project")
    return project


def _not_found() -> Response:
    return Response(
        "Not found: no such project or run for you.", status_code=404, media_type="text/plain"
    )


@router.get("", response_class=HTMLResponse)
def projects_page(request: Request, state: State) -> Response:
    """The analyst's projects with their latest finished run."""
    principal = _signed_in(request, state)
    if principal is None:
        return _to_login()
    with state.db.snapshot() as session:
        projects = _member_projects(session, principal)
        latest: dict[str, Run | None] = {}
        counts: dict[str, int] = {}
        for p in projects:
            runs = list(session.execute(select(Run).where(Run.project_id == p.id)
                                        .order_by(Run.created_at)).scalars())  # fmt: skip
            counts[p.id] = len(runs)
            latest[p.id] = next((r for r in reversed(runs) if r.status == "done"), None)
    return _page(
        request, "projects.html", principal, projects=projects, latest=latest, counts=counts
    )


@router.get("/projects/{project_id}", response_class=HTMLResponse)
def project_page(request: Request, state: State, project_id: str) -> Response:
    """A project's runs (newest first) and the partners' current submissions."""
    principal = _signed_in(request, state)
    if principal is None:
        return _to_login()
    with state.db.snapshot() as session:
        try:
            project = _project(session, principal, project_id)
        except NotFound:
            return _not_found()
        runs = list(session.execute(select(Run).where(Run.project_id == project.id)
                                    .order_by(Run.created_at.desc())).scalars())  # fmt: skip
        names = {p.id: p.name for p in session.execute(select(Principal)).scalars()}
        rows = [{"id": r.id, "status": r.status, "stage": r.stage, "requested_by": names.get(r.requested_by, "?"),
                 "created_at": r.created_at, "finished_at": r.finished_at, "message": r.message,
                 "period": r.period,
                 "params": {k: v for k, v in json.loads(r.params_json or "{}").items() if k != "period"}}
                for r in runs]  # fmt: skip
        spec = json.loads(project.spec_json)
    periods = sorted({str(r["period"]) for r in rows if r["status"] == "done" and r["period"]},
                     key=period_key)  # fmt: skip
    return _page(request, "project.html", principal, project=project, runs=rows, periods=periods,
                 attributes=[a.get("name") for a in spec.get("attributes", [])])  # fmt: skip


def _release(
    state: AppState, principal: Principal, project_id: str, run_id: str, *, audit: str
) -> tuple[Project, Run, dict[str, Any]]:
    """A run's release for this analyst. ``audit``: ``always`` records a results.read,
    ``once`` only if this analyst has not read this run before (chart images)."""
    actor = Actor(principal.name, "analyst")
    with state.db.transaction() as session:
        project = _project(session, principal, project_id)
        run = session.get(Run, run_id)
        if run is None or run.project_id != project.id:
            raise NotFound("no such run")
        seen = audit == "once" and session.execute(
            select(AuditEvent.seq).where(AuditEvent.action == "results.read", AuditEvent.subject == run.id,
                                         AuditEvent.actor == principal.name).limit(1)
        ).first() is not None  # fmt: skip
        if seen and run.status == "done":
            result = session.get(Result, run.id)
            assert result is not None
            released: dict[str, Any] = json.loads(result.released_json)
        else:
            released = read_results(session, run, by=actor)
        session.expunge(project)
        session.expunge(run)
    return project, run, released


@router.get("/projects/{project_id}/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, state: State, project_id: str, run_id: str) -> Response:
    """A finished run's released results: overlaps, charts, breakdowns, notes (audited)."""
    principal = _signed_in(request, state)
    if principal is None:
        return _to_login()
    try:
        project, run, released = _release(state, principal, project_id, run_id, audit="always")
    except NotFound:
        return _not_found()
    except Conflict as exc:
        return _page(
            request, "not_ready.html", principal, project_id=project_id, message=exc.detail
        )
    with state.db.snapshot() as session:
        context = run_context(session, project, run)
    base = f"/analyst/projects/{project.id}/runs/{run.id}"
    charts = [{"name": n, "title": t, "png": f"{base}/charts/{n}.png", "svg": f"{base}/charts/{n}.svg"}
              for n, t in available_charts(released) + _maps(state, released)]  # fmt: skip
    diagnostics = released.get("diagnostics") or {}
    return _page(request, "run.html", principal, project=project, run=run, released=released,
                 tables=result_tables(released), notes=footnotes(released),
                 policy=policy_in_words(released.get("policy", {})), charts=charts, base=base,
                 context=context, comparisons=diagnostics.get("comparisons") or [],
                 withheld=withheld_diagnostics(released), period=label(released.get("period")))  # fmt: skip


def _maps(state: AppState, released: dict[str, Any]) -> list[tuple[str, str]]:
    """The maps, when the operator supplied a boundaries file (keyed by district or by
    sector) whose areas the release's breakdowns name."""
    if state.settings.boundaries is None:
        return []
    try:
        attrs = mappable(released, _boundaries(state))
    except ChartError:
        return []  # a broken file: no map offered (the chart route says why)
    return [(f"map-{attr}-{cohort}", f"Map: {who} by {attr.replace('_', ' ')}")
            for attr in attrs
            for cohort, who in (("persons", "everyone"), ("frequent", "frequent users"))]  # fmt: skip


_BOUNDARIES: dict[str, Any] = {}


def _boundaries(state: AppState) -> Any:
    """The operator's boundaries, read once per file version."""
    path = state.settings.boundaries
    if path is None:
        raise ChartError("no boundaries file is configured (PPRL_BOUNDARIES)")
    key = f"{path}:{path.stat().st_mtime_ns if path.exists() else 0}"
    if key not in _BOUNDARIES:
        try:
            _BOUNDARIES[key] = load_boundaries(path)
        except BoundariesError as exc:
            raise ChartError(str(exc)) from None
    return _BOUNDARIES[key]


_CHARTS: OrderedDict[tuple[str, str, str], bytes] = OrderedDict()
_CHARTS_LOCK = threading.Lock()
_DRAW_LOCK = threading.Lock()


def _chart_bytes(
    state: AppState, run_id: str, released: dict[str, Any], name: str, fmt: str
) -> bytes:
    """A rendered chart; a run's release never changes, so the last 64 are kept."""
    key = (run_id, name, fmt)
    with _CHARTS_LOCK:
        if key in _CHARTS:
            _CHARTS.move_to_end(key)
            return _CHARTS[key]
    # one chart drawn at a time: the browser asks for a page's charts all at once, and
    # matplotlib's first import and its global rc settings (render's rc_context) are not
    # safe across threads (concurrent first draws hung the page's images now and then)
    with _DRAW_LOCK:
        with _CHARTS_LOCK:  # drawn while this request waited for its turn?
            if key in _CHARTS:
                return _CHARTS[key]
        if name.startswith("map-"):
            if name not in dict(_maps(state, released)):
                raise ChartError(f"no chart called {name!r} for this release")
            _, attr, cohort = name.split("-", 2)
            figure = choropleth(released, _boundaries(state), attr, cohort)
        else:
            figure = chart(released, name)
        data = render(figure, fmt)
    with _CHARTS_LOCK:
        _CHARTS[key] = data
        while len(_CHARTS) > 64:
            _CHARTS.popitem(last=False)
    return data


@router.get("/projects/{project_id}/runs/{run_id}/charts/{name}.{fmt}")
def chart_image(
    request: Request, state: State, project_id: str, run_id: str, name: str, fmt: str
) -> Response:
    """One chart of a run as PNG or SVG (with title, date and source note)."""
    principal = _signed_in(request, state)
    if principal is None:
        return Response("sign in first", status_code=401, media_type="text/plain")
    if fmt not in ("png", "svg"):
        return Response("charts are png or svg", status_code=404, media_type="text/plain")
    try:
        _, run, released = _release(state, principal, project_id, run_id, audit="once")
        data = _chart_bytes(state, run.id, released, name, fmt)
    except (NotFound, ChartError):
        return _not_found()
    except Conflict as exc:
        return Response(exc.detail, status_code=409, media_type="text/plain")
    filename = f"pprl-{run.id[:8]}-{name}.{fmt}"
    return Response(data, media_type=FORMATS[fmt],
                    headers={"Content-Disposition": f'inline; filename="{filename}"'})  # fmt: skip


@router.get("/projects/{project_id}/runs/{run_id}/results.{fmt}")
def download(request: Request, state: State, project_id: str, run_id: str, fmt: str) -> Response:
    """Every table of a run as tidy CSV or as one Excel workbook with a notes sheet (audited)."""
    principal = _signed_in(request, state)
    if principal is None:
        return _to_login()
    if fmt not in ("csv", "xlsx"):
        return _not_found()
    try:
        project, run, released = _release(state, principal, project_id, run_id, audit="always")
    except NotFound:
        return _not_found()
    except Conflict as exc:
        return Response(exc.detail, status_code=409, media_type="text/plain")
    filename = f"pprl-{project.name}-{run.id[:8]}.{fmt}".replace('"', "")
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if fmt == "csv":
        return Response(csv_text(released), media_type="text/csv; charset=utf-8", headers=headers)
    with state.db.snapshot() as session:
        used = submissions_used(session, run)
    data = xlsx_bytes(released, project=project.name, submissions=used)
    return Response(data, headers=headers,
                    media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")  # fmt: skip


def _latest_of_period(state: AppState, principal: Principal, project_id: str, period: str) -> str:
    """The newest finished run of ``period`` (NotFound if there is none)."""
    with state.db.snapshot() as session:
        project = _project(session, principal, project_id)
        run_id = session.execute(
            select(Run.id).where(Run.project_id == project.id, Run.period == period,
                                 Run.status == "done")
            .order_by(Run.created_at.desc()).limit(1)
        ).scalar()  # fmt: skip
    if run_id is None:
        raise NotFound(f"no finished run of period {period}")
    return str(run_id)


@router.get("/projects/{project_id}/compare", response_class=HTMLResponse)
def compare_page(
    request: Request,
    state: State,
    project_id: str,
    before: str = "",
    after: str = "",
    before_period: str = "",
    after_period: str = "",
) -> Response:
    """The change between two finished runs in every figure both released (audited reads);
    ``before_period`` / ``after_period`` name periods instead (their newest finished runs).
    Changes are differences of released figures only; suppressed on either side, the
    change is suppressed too."""
    principal = _signed_in(request, state)
    if principal is None:
        return _to_login()
    try:
        if before_period:
            before = _latest_of_period(state, principal, project_id, before_period)
        if after_period:
            after = _latest_of_period(state, principal, project_id, after_period)
        project, first, earlier = _release(state, principal, project_id, before, audit="always")
        _, second, later = _release(state, principal, project_id, after, audit="always")
    except NotFound:
        return _not_found()
    except Conflict as exc:
        return _page(
            request, "not_ready.html", principal, project_id=project_id, message=exc.detail
        )
    band = noise_band(later.get("policy", {}))
    groups: dict[str, list[Any]] = {}
    for change in compare(earlier, later):
        groups.setdefault(change.group, []).append(change)
    return _page(request, "compare.html", principal, project=project, first=first, second=second,
                 earlier=earlier, later=later, groups=groups, band=band,
                 periods=(earlier.get("period"), later.get("period")))  # fmt: skip
