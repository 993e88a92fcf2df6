"""Signed session cookies and CSRF tokens for the DPO pages (HMAC-SHA256, no state)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

__all__ = ["COOKIE", "CSRF_COOKIE", "Sessions"]

COOKIE = "pprl_dpo"
CSRF_COOKIE = "pprl_csrf"


class Sessions:
    """Issues and checks ``principal_id.expiry.mac`` cookies and per-session CSRF tokens."""

    def __init__(self, secret: bytes, lifetime_seconds: int = 8 * 3600) -> None:
        self._key = hashlib.sha256(b"pprl dpo session\x00" + secret).digest()
        self.lifetime = lifetime_seconds

    def _mac(self, message: str) -> str:
        digest = hmac.new(self._key, message.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, principal_id: str) -> str:
        body = f"{principal_id}.{int(time.time()) + self.lifetime}"
        return f"{body}.{self._mac(body)}"

    def principal(self, cookie: str | None) -> str | None:
        """The principal id of a valid, unexpired cookie, else None."""
        if not cookie or cookie.count(".") != 2:
            return None
        principal_id, expiry, mac = cookie.split(".")
        body = f"{principal_id}.{expiry}"
        if not hmac.compare_digest(mac, self._mac(body)) or not expiry.isdigit():
            return None
        return principal_id if int(expiry) > time.time() else None

    def csrf_for(self, cookie: str) -> str:
        return self._mac("csrf\x00" + cookie)

    def csrf_ok(self, cookie: str | None, token: str | None) -> bool:
        return bool(cookie and token and hmac.compare_digest(token, self.csrf_for(cookie)))

    @staticmethod
    def new_nonce() -> str:
        return secrets.token_urlsafe(24)
