"""DPO page sessions held on the server, and CSRF tokens bound to them.

The cookie carries a random session id; the database keeps only its SHA-256 digest in
``dpo_sessions`` with an expiry no later than the DPO token's own. Every page load checks
the row: a session ends at sign-out (``ended_at``), at its expiry, when the token
expires and when the token is revoked, so a copied or replayed cookie stops working at
once. CSRF tokens are an HMAC of the cookie under the service's session secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from service.db.models import DpoSession, Principal

__all__ = ["COOKIE", "CSRF_COOKIE", "Sessions"]

COOKIE = "pprl_dpo"
CSRF_COOKIE = "pprl_csrf"


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _digest(cookie: str) -> str:
    return hashlib.sha256(b"pprl dpo session\x00" + cookie.encode()).hexdigest()


class Sessions:
    """Issues, checks and ends server-side sessions; makes and checks CSRF tokens."""

    def __init__(self, secret: bytes, lifetime_seconds: int = 8 * 3600) -> None:
        self._key = hashlib.sha256(b"pprl dpo csrf\x00" + secret).digest()
        self.lifetime = lifetime_seconds

    def _mac(self, message: str) -> str:
        digest = hmac.new(self._key, message.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, session: Session, principal_id: str) -> tuple[str, int]:
        """A new session for ``principal_id`` (inside the caller's transaction): the
        cookie value and its lifetime in seconds (never beyond the token's expiry)."""
        now = datetime.now(UTC)
        expires = now + timedelta(seconds=self.lifetime)
        principal = session.get(Principal, principal_id)
        if principal is not None and principal.expires_at is not None:
            expires = min(expires, _aware(principal.expires_at))
        cookie = secrets.token_urlsafe(32)
        session.add(
            DpoSession(
                id_digest=_digest(cookie),
                principal_id=principal_id,
                created_at=now,
                expires_at=expires,
                ended_at=None,
            )
        )
        session.flush()
        return cookie, max(int((expires - now).total_seconds()), 0)

    def principal(
        self, session: Session, cookie: str | None, role: str = "dpo"
    ) -> Principal | None:
        """The ``role`` principal (DPO unless the analyst pages ask) behind a live session,
        else None (ended, expired, revoked, unknown, another role)."""
        if not cookie or len(cookie) > 100:
            return None
        row = session.get(DpoSession, _digest(cookie))
        now = datetime.now(UTC)
        if row is None or row.ended_at is not None or _aware(row.expires_at) <= now:
            return None
        who = session.get(Principal, row.principal_id)
        if who is None or who.role != role or who.revoked_at is not None:
            return None
        if who.expires_at is not None and _aware(who.expires_at) <= now:
            return None
        return who

    def end(self, session: Session, cookie: str | None) -> bool:
        """End the session (sign-out); True if there was a live one."""
        if not cookie or len(cookie) > 100:
            return False
        row = session.get(DpoSession, _digest(cookie))
        if row is None or row.ended_at is not None:
            return False
        row.ended_at = datetime.now(UTC)
        return True

    def csrf_for(self, cookie: str) -> str:
        return self._mac("csrf\x00" + cookie)

    def csrf_ok(self, cookie: str | None, token: str | None) -> bool:
        return bool(cookie and token and hmac.compare_digest(token, self.csrf_for(cookie)))

    @staticmethod
    def new_nonce() -> str:
        return secrets.token_urlsafe(24)
