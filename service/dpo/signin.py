"""Signing in to the web pages (DPO and analyst): one set of rules for both.

The CSRF nonce of the sign-in form is checked, the token authenticated, and the role
required by the pages checked. A refusal is audited, but an unknown token is anonymous:
it counts against its address's failed-authentication limit and is written once per
window, like the API's denials. Success is audited and opens a server-side session.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from fastapi import Request

from service.api.deps import AppState, denial_gate, write_closed_denials
from service.audit import Actor, record
from service.auth import authenticate
from service.dpo.session import CSRF_COOKIE, Sessions
from service.errors import Unauthorized

__all__ = ["SignIn", "sessions", "sign_in"]


def sessions(state: AppState) -> Sessions:
    """The process's page sessions (DPO and analyst share the store)."""
    if not hasattr(state, "_dpo_sessions"):
        secret = state.settings.session_secret.get_secret_value().encode()
        if secret.startswith(b"development"):
            secret = secrets.token_bytes(32)  # development: CSRF tokens last as long as the process
        lifetime = int(state.settings.dpo_session_hours * 3600)
        state._dpo_sessions = Sessions(secret, lifetime)  # type: ignore[attr-defined]
    return state._dpo_sessions  # type: ignore[attr-defined,no-any-return]


@dataclass(frozen=True)
class SignIn:
    """A new session (``cookie`` for ``lifetime`` seconds), or the sign-in form's ``error``
    code: ``expired`` (CSRF), ``invalid`` or ``too_many`` (answer 429)."""

    cookie: str | None = None
    lifetime: int = 0
    error: str | None = None


def sign_in(
    state: AppState, request: Request, token: str, csrf: str, *, role: str, label: str
) -> SignIn:
    """Check the form, authenticate ``token`` for ``role``, audit as ``<role>.sign_in``.

    ``label`` names the token in the audited reason ("not a valid DPO token").
    """
    nonce = request.cookies.get(CSRF_COOKIE)
    if not nonce or not secrets.compare_digest(nonce, csrf):
        return SignIn(error="expired")
    try:
        with state.db.snapshot() as session:
            who = authenticate(session, token.strip())
    except Unauthorized:
        who = None
    action = f"{role}.sign_in"
    if who is None or who.role != role:
        client = request.client.host if request.client else "unknown"
        gate = denial_gate(state)
        limited = who is None and gate.over_limit(client)
        # an unknown token is anonymous: counted per window, not one event per attempt
        if who is not None or gate.first_in_window(client):
            with state.db.transaction() as session:
                record(session, actor=who.actor if who else Actor("anonymous", "none"),
                       action=action, outcome="denied",
                       details={"reason": f"not a valid {label} token"})  # fmt: skip
        write_closed_denials(state)
        return SignIn(error="too_many" if limited else "invalid")
    with state.db.transaction() as session:
        record(session, actor=who.actor, action=action)
        cookie, lifetime = sessions(state).issue(session, who.id)
    return SignIn(cookie=cookie, lifetime=lifetime)
