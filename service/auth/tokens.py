"""Bearer tokens: 256 random bits, shown once, stored only as a SHA-256 digest."""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["TOKEN_PREFIX", "digest", "new_token", "same_digest"]

TOKEN_PREFIX = "pprl_"  # noqa: S105 - a prefix, not a secret


def new_token() -> str:
    """A new token: ``pprl_`` + 43 URL-safe characters (32 bytes from the CSPRNG)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def digest(token: str) -> str:
    """What the database stores (and looks tokens up by)."""
    return hashlib.sha256(token.encode()).hexdigest()


def same_digest(a: str, b: str) -> bool:
    """Constant-time comparison of two digests."""
    return hmac.compare_digest(a.encode(), b.encode())
