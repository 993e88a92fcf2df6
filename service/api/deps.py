"""Request-scoped dependencies: the app state, one transaction per request, the caller,
and authorisation checks whose refusals are audited.

A refusal is written to the audit log in its own transaction, because the request's own
transaction is rolled back when the refusal is raised.

Every request that touches the database first takes one of a fixed number of database
slots (:func:`db_slot`), fewer than the threadpool has threads. Why: a sync route's
transaction stays open until FastAPI has serialised its response, which needs one more
threadpool thread. Without slots, enough concurrent requests would fill every thread with
waiters for the database (SQLite's write lock, or an empty connection pool) while the
request holding it waited for a thread: a deadlock that only timeouts broke. Waiting for
a slot is asynchronous and holds no thread.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, TypeVar

import anyio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from service.api.cache import Lru
from service.api.shared import SharedReads
from service.audit import Actor, record
from service.audit.denials import DenialGate
from service.audit.writer import AuditWriter
from service.auth import Authenticated, find_project, is_member
from service.auth import recent as recent_tokens
from service.auth.principals import authenticate_until
from service.auth.tokens import digest
from service.db import Database
from service.db.models import Project, Run
from service.errors import Forbidden, NotFound, ServiceError, TooManyRequests, Unauthorized
from service.settings import Settings

if TYPE_CHECKING:
    from service.runs.service import Release

__all__ = [
    "AppState",
    "AsyncCaller",
    "Bearer",
    "Caller",
    "DbSession",
    "ReadSession",
    "Slot",
    "State",
    "app_state",
    "audit_writer",
    "authenticate_request",
    "db_slot",
    "denial_gate",
    "deny",
    "in_db_slot",
    "member_project",
    "member_project_id",
    "record_denial",
    "require_role",
    "write_closed_denials",
]

_T = TypeVar("_T")

ANONYMOUS = Actor("anonymous", "none")
_bearer = HTTPBearer(auto_error=False, description="A pprl token: `Authorization: Bearer pprl_...`")


@dataclass
class AppState:
    """What every request can reach: settings, the database and the enclave public key."""

    settings: Settings
    db: Database
    enclave_public_key: X25519PublicKey
    audit_public_key: Ed25519PublicKey
    db_slots: anyio.CapacityLimiter
    denials: DenialGate | None = None  # made from the settings on first use
    writer: AuditWriter | None = None  # made on first use
    # immutable things served often: releases by run id, audit events' JSON by (seq, hash)
    releases: Lru[str, Release] = field(default_factory=lambda: Lru(64))
    event_json: Lru[tuple[int, str], bytes] = field(default_factory=lambda: Lru(10_000))
    # audit pages being read, joined by the requests for the same page until they begin
    page_reads: SharedReads[Hashable, bytes] = field(default_factory=SharedReads)
    # checks of read grants (below) not begun yet, joined by the same caller's reads
    grant_checks: SharedReads[tuple[str, str, str], tuple[Run, Release]] = field(
        default_factory=SharedReads
    )
    # valid tokens checked in the last second (see service.auth.recent for why that is safe)
    recent: recent_tokens.RecentTokens = field(default_factory=recent_tokens.RecentTokens)
    # (caller, project, run) found allowed to read that run's release, with the run and
    # release, in the last second, on the same terms as the tokens
    read_grants: recent_tokens.RecentGrants[tuple[str, str, str], tuple[Run, Release]] = field(
        default_factory=recent_tokens.RecentGrants
    )
    checking: dict[str, asyncio.Future[None]] = field(
        default_factory=dict
    )  # token checks under way


def audit_writer(state: AppState) -> AuditWriter:
    """The process's group-commit writer of audit events that responses wait for."""
    if state.writer is None:
        state.writer = AuditWriter(state.db)
    return state.writer


def denial_gate(state: AppState) -> DenialGate:
    """The per-process limiter and aggregator of failed authentication."""
    if state.denials is None:
        state.denials = DenialGate(
            state.settings.auth_failures_per_minute, state.settings.denial_window_seconds
        )
    return state.denials


def app_state(request: Request) -> AppState:
    """The app's state, read from the request. The hot routes and the caller's
    dependencies use this rather than :data:`State`: FastAPI solves each dependency a
    route names, even one already solved for the same request (then only to find it in
    its cache), and on the read path those solves cost more than the reads."""
    state: AppState = request.app.state.pprl
    return state


async def get_state(request: Request) -> AppState:
    """The app's state. ``async`` because FastAPI runs a plain ``def`` dependency in the
    threadpool: this one, in every request, was a thread hand-off for an attribute read."""
    return app_state(request)


State = Annotated[AppState, Depends(get_state)]


async def db_slot(state: State) -> AsyncIterator[None]:
    """Hold one database slot for the rest of the request (see the module docstring)."""
    async with state.db_slots:
        yield


Slot = Annotated[None, Depends(db_slot)]


async def in_db_slot(state: AppState, fn: Callable[..., _T], *args: object) -> _T:
    """Run blocking database work ``fn(*args)`` in the threadpool, inside a slot.

    For async routes and handlers, which hold no slot of their own (an upload must not
    keep one while its body streams in).
    """
    async with state.db_slots:
        return await run_in_threadpool(fn, *args)


def get_session(state: State, _slot: Slot) -> Iterator[Session]:
    """The request's one transaction: commit on success, roll back on any error."""
    with state.db.transaction() as session:
        yield session


def get_read_session(state: State, _slot: Slot) -> Iterator[Session]:
    """A read-only snapshot for routes that write nothing (not even an audit event)."""
    with state.db.snapshot() as session:
        yield session


DbSession = Annotated[Session, Depends(get_session)]
ReadSession = Annotated[Session, Depends(get_read_session)]


def deny(
    state: AppState,
    error: ServiceError,
    *,
    actor: Actor,
    action: str,
    project_id: str | None = None,
) -> ServiceError:
    """Mark ``error`` as a refusal to audit, and return it to raise.

    The event is written by the app's error handler once the request's transaction has
    been rolled back (writing it here would deadlock on SQLite and be rolled back anyway).
    """
    error.audit = {"actor": actor, "action": action, "project_id": project_id}
    return error


def record_denial(state: AppState, error: ServiceError) -> None:
    """Write the audit event of a refusal marked by :func:`deny`, in its own transaction.

    An anonymous refusal (``aggregate`` set: failed authentication) is written in full
    only if it is its client's first in the window; later ones are counted and written
    as one ``access.denied_repeated`` event when the window closes.
    """
    info = error.audit or {}
    actor = info.get("actor")
    gate = denial_gate(state)
    client = info.get("aggregate")
    if isinstance(client, str) and not gate.first_in_window(client):
        write_closed_denials(state)
        return
    write_closed_denials(state)
    with state.db.transaction() as session:
        record(
            session,
            actor=actor if isinstance(actor, Actor) else ANONYMOUS,
            action="access.denied",
            outcome="denied",
            project_id=str(info["project_id"]) if info.get("project_id") else None,
            subject=str(info.get("action")),
            # the reason may quote the caller's input (a project reference): keep it short
            details={"status": error.status, "reason": error.detail[:500]},
        )


def write_closed_denials(state: AppState) -> None:
    """Write one event per closed window of counted denials (no-op when there are none)."""
    closed = denial_gate(state).take_closed()
    if not closed:
        return
    with state.db.transaction() as session:
        for repeated in closed:
            record(
                session,
                actor=ANONYMOUS,
                action="access.denied_repeated",
                outcome="denied",
                subject=repeated.client[:200],
                details={
                    "count": repeated.count,
                    "window_seconds": repeated.window_seconds,
                    "reason": "failed authentication, counted after the window's first event",
                },
            )


Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def authenticate_request(
    state: AppState, credentials: HTTPAuthorizationCredentials | None, request: Request
) -> Authenticated:
    """The caller behind the bearer token; 401 (audited) without a valid, live token."""
    token = credentials.credentials if credentials else None
    client = request.client.host if request.client else "unknown"
    gate = denial_gate(state)
    since = recent_tokens.generation()
    try:
        with state.db.snapshot() as session:  # reads only: no write lock for every request
            who, expires = authenticate_until(session, token)
    except Unauthorized as exc:
        if gate.over_limit(client):
            error: ServiceError = TooManyRequests(
                "too many failed authentications from this address; wait a minute"
            )
        else:
            error = exc
        denied = deny(state, error, actor=ANONYMOUS, action=f"{request.method} {request.url.path}")
        denied.audit = {**(denied.audit or {}), "aggregate": client}
        raise denied from None
    assert token is not None
    state.recent.put(digest(token), who, expires, since)
    if gate.has_closed():
        write_closed_denials(state)
    return who


def _recent_caller(
    state: AppState, credentials: HTTPAuthorizationCredentials | None
) -> Authenticated | None:
    """The caller if its token was found valid within the last second (no database),
    unless counted denials are waiting to be written (the full check writes them)."""
    if credentials is None or denial_gate(state).has_closed():
        return None
    return state.recent.get(digest(credentials.credentials))


async def _caller(
    state: AppState,
    credentials: HTTPAuthorizationCredentials | None,
    check: Callable[[], Awaitable[Authenticated]],
) -> Authenticated:
    """The caller: remembered, or checked by ``check``. When a remembered token's second
    is up, the many requests carrying it wait for one check instead of each making one
    (at most half a second: then each checks for itself)."""
    who = _recent_caller(state, credentials)
    if who is not None or credentials is None:
        return who or await check()
    key = digest(credentials.credentials)
    loop = asyncio.get_running_loop()
    pending = state.checking.get(key)
    if pending is not None and pending.get_loop() is loop:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(pending), 0.5)
        who = _recent_caller(state, credentials)
        return who or await check()  # the check failed (or is slow): check for ourselves
    mine: asyncio.Future[None] = loop.create_future()
    state.checking[key] = mine
    try:
        return await check()
    finally:
        if state.checking.get(key) is mine:
            del state.checking[key]
        mine.set_result(None)


async def get_caller(request: Request, credentials: Bearer, _slot: Slot) -> Authenticated:
    """The authenticated caller; 401 (audited) without a valid, live token."""
    state = app_state(request)
    return await _caller(state, credentials, lambda: run_in_threadpool(
        authenticate_request, state, credentials, request))  # fmt: skip


Caller = Annotated[Authenticated, Depends(get_caller)]


async def get_caller_async(request: Request, credentials: Bearer) -> Authenticated:
    """The caller, for async routes: a slot only while checking the token, not after."""
    state = app_state(request)
    return await _caller(state, credentials, lambda: in_db_slot(
        state, authenticate_request, state, credentials, request))  # fmt: skip


AsyncCaller = Annotated[Authenticated, Depends(get_caller_async)]


def require_role(state: AppState, caller: Authenticated, action: str, *roles: str) -> None:
    """403 (audited) unless the caller has one of ``roles``."""
    if caller.role not in roles:
        raise deny(
            state,
            Forbidden(f"the {caller.role} role may not {action}"),
            actor=caller.actor,
            action=action,
        )


def member_project(
    state: AppState,
    session: Session,
    caller: Authenticated,
    project_ref: str,
    action: str,
    *,
    roles: tuple[str, ...],
    admin_ok: bool = True,
) -> Project:
    """The project, if the caller's role may do ``action`` and the caller is a member.

    Wrong role: 403. Not a member: 404, exactly as for a project that does not exist, so
    that a project's existence does not leak. Both audited.
    """
    require_role(state, caller, action, *roles)
    try:
        project = find_project(session, project_ref)
    except NotFound as exc:
        raise deny(state, exc, actor=caller.actor, action=action) from None
    _check_member(state, session, caller, project.id, project_ref, action, admin_ok)
    return project


def member_project_id(
    state: AppState,
    session: Session,
    caller: Authenticated,
    project_ref: str,
    action: str,
    *,
    roles: tuple[str, ...],
    admin_ok: bool = True,
) -> str:
    """:func:`member_project`'s checks and refusals, returning only the project's id
    (for hot read paths: the project row carries its whole spec)."""
    require_role(state, caller, action, *roles)
    project_id = session.execute(
        select(Project.id).where((Project.id == project_ref) | (Project.name == project_ref))
    ).scalar()
    if project_id is None:
        raise deny(state, NotFound(f"no project {project_ref!r}"), actor=caller.actor,
                   action=action)  # fmt: skip
    _check_member(state, session, caller, project_id, project_ref, action, admin_ok)
    return project_id


def _check_member(
    state: AppState, session: Session, caller: Authenticated, project_id: str,
    project_ref: str, action: str, admin_ok: bool,
) -> None:  # fmt: skip
    if caller.role == "admin" and admin_ok:
        return
    if caller.role == "dpo" or not is_member(session, project_id, caller.id):
        raise deny(
            state,
            NotFound(f"no project {project_ref!r}"),
            actor=caller.actor,
            action=action,
            project_id=project_id,
        )
