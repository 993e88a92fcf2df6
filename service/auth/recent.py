"""A one-second memory of the tokens this process has just checked.

Checking a token is a database query on every request; under 50 clients the same few
tokens are checked hundreds of times a second. A token found valid is remembered for
at most :data:`HOLD_SECONDS`, never past its own expiry. Why that is acceptable:

- revoking or rotating a token in this process (``DELETE /v1/tokens/...``, rotation)
  forgets every remembered token at once, so it ends at once, as before;
- revoked from another process (``pprl admin token revoke`` on the database, another
  API process), it is refused within one second instead of at once: well inside the
  time it takes a person to revoke a token and tell anyone it is done;
- only tokens that were valid are remembered (keyed by their SHA-256, as stored), so a
  flood of bad tokens neither fills this memory nor skips a single check or audit event.

:class:`RecentGrants` holds, on the same terms, what a caller was just found allowed to
read (a run's release, for the caller who may read it): the grant holds for a second
and any revocation here forgets it with the tokens.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from service.api.cache import Lru
from service.auth.principals import Authenticated

__all__ = ["HOLD_SECONDS", "RecentGrants", "RecentTokens", "forget_all", "generation"]

HOLD_SECONDS = 1.0

_generation = 0
_generation_lock = threading.Lock()


def forget_all() -> None:
    """Make every process-local memory of tokens forget them (a token was revoked or
    rotated here)."""
    global _generation
    with _generation_lock:
        _generation += 1


def generation() -> int:
    """Take before checking a token in the database; give to :meth:`RecentTokens.put`."""
    return _generation


_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


@dataclass(frozen=True)
class _Grant(Generic[_V]):
    value: _V
    checked: float
    generation: int


class RecentGrants(Generic[_K, _V]):
    """Checks that succeeded in the last second, by what was checked (e.g. caller,
    project, run), with what the check found."""

    def __init__(self, hold_seconds: float = HOLD_SECONDS, size: int = 1024) -> None:
        self._hold = hold_seconds
        self._entries: Lru[_K, _Grant[_V]] = Lru(size)

    def get(self, key: _K) -> _V | None:
        """What the check of ``key`` found, if it succeeded within the hold and nothing
        was revoked here since; else None (check again)."""
        entry = self._entries.get(key)
        if entry is None or entry.generation != _generation:
            return None
        if time.monotonic() - entry.checked > self._hold:
            return None
        return entry.value

    def put(self, key: _K, value: _V, since: int) -> None:
        """Remember a check that began at :func:`generation` ``since`` and succeeded."""
        if since == _generation:
            self._entries.put(key, _Grant(value, time.monotonic(), since))


class RecentTokens:
    """Valid tokens checked in the last second, by digest: a :class:`RecentGrants` of
    the caller and the token's expiry, which also ends a remembered token."""

    def __init__(self, hold_seconds: float = HOLD_SECONDS, size: int = 1024) -> None:
        self._grants: RecentGrants[str, tuple[Authenticated, datetime | None]] = RecentGrants(
            hold_seconds, size
        )

    def get(self, token_digest: str) -> Authenticated | None:
        """The caller behind ``token_digest`` if it was found valid within the hold, has
        not expired since and nothing was revoked here since; else None (check again)."""
        found = self._grants.get(token_digest)
        if found is None:
            return None
        who, expires_at = found
        if expires_at is not None and expires_at <= datetime.now(UTC):
            return None
        return who

    def put(
        self, token_digest: str, who: Authenticated, expires_at: datetime | None, since: int
    ) -> None:
        """Remember a token found valid by a check that began at :func:`generation`
        ``since`` (not at all if a token was revoked or rotated here meanwhile)."""
        self._grants.put(token_digest, (who, expires_at), since)
