"""Denials recorded, not amplified: failed authentication is rate-limited per client,
and repeated anonymous denials become one audit event per window with a count.

Without this, every bad-token request appended a chained event that can never be
removed: a flood of junk requests grew the log (and every verification) without bound.
Now the first denial of a client in a window is recorded as before; the rest of that
window are counted and written as one ``access.denied_repeated`` event when the window
closes (at the next denial or authentication after it). Distinct clients beyond
``max_clients_per_window`` in one window share a single counter, so rotating addresses
does not amplify either. State is per process and bounded.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["DenialGate", "Repeated"]

_MAX_TRACKED = 10_000
OVERFLOW = "*"  # the shared key of clients beyond the per-window limit


@dataclass(frozen=True)
class Repeated:
    """Denials of one client in one closed window that were counted, not recorded."""

    client: str
    count: int
    window_start: float
    window_seconds: int


@dataclass
class _Window:
    start: float
    extra: int = 0


class DenialGate:
    """Per-client token bucket on failed authentication, and per-window denial counts."""

    def __init__(
        self,
        failures_per_minute: int = 30,
        window_seconds: int = 60,
        max_clients_per_window: int = 20,
    ) -> None:
        self.rate = max(failures_per_minute, 1) / 60.0
        self.burst = float(max(failures_per_minute, 1))
        self.window = max(window_seconds, 1)
        self.max_clients = max_clients_per_window
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._windows: OrderedDict[str, _Window] = OrderedDict()
        self._global_start = 0.0
        self._global_firsts = 0
        self._closed: list[Repeated] = []
        self.clock: Callable[[], float] = time.monotonic

    def over_limit(self, client: str, now: float | None = None) -> bool:
        """Count one failed authentication by ``client``; True once it exceeds its rate."""
        now = self.clock() if now is None else now
        with self._lock:
            tokens, at = self._buckets.pop(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            limited = tokens < 1.0
            self._buckets[client] = (tokens if limited else tokens - 1.0, now)
            while len(self._buckets) > _MAX_TRACKED:
                self._buckets.popitem(last=False)
            return limited

    def first_in_window(self, client: str, now: float | None = None) -> bool:
        """True if this denial should be recorded in full; else it is counted."""
        now = self.clock() if now is None else now
        with self._lock:
            if now - self._global_start >= self.window:
                self._global_start, self._global_firsts = now, 0
            window = self._windows.get(client)
            if window is not None and now - window.start < self.window:
                window.extra += 1
                return False
            if window is not None:
                return self._count_overflow_or_open(client, now, reopen=True)
            return self._count_overflow_or_open(client, now, reopen=False)

    def _count_overflow_or_open(self, client: str, now: float, *, reopen: bool) -> bool:
        if self._global_firsts >= self.max_clients and client != OVERFLOW:
            overflow = self._windows.get(OVERFLOW)
            if overflow is None or now - overflow.start >= self.window:
                # the overflow window's own first denial is counted too: it has no event
                if overflow is not None and overflow.extra:
                    self._closed.append(self._repeated(OVERFLOW, overflow))
                self._windows[OVERFLOW] = _Window(now, 1)
            else:
                overflow.extra += 1
            return False
        if reopen:
            old = self._windows.pop(client)
            if old.extra:
                self._closed.append(self._repeated(client, old))
        self._windows[client] = _Window(now)
        self._global_firsts += 1
        while len(self._windows) > _MAX_TRACKED:
            key, old = self._windows.popitem(last=False)
            if old.extra:
                self._closed.append(self._repeated(key, old))
        return True

    def _repeated(self, client: str, window: _Window) -> Repeated:
        return Repeated(client, window.extra, window.start, self.window)

    def take_closed(self, now: float | None = None) -> list[Repeated]:
        """Counts of windows that have closed, to write as events (each taken once)."""
        now = self.clock() if now is None else now
        with self._lock:
            for client, window in list(self._windows.items()):
                if now - window.start >= self.window:
                    del self._windows[client]
                    if window.extra:
                        self._closed.append(self._repeated(client, window))
            closed, self._closed = self._closed, []
            return closed

    def has_closed(self, now: float | None = None) -> bool:
        """Cheap check: is there a closed window with uncounted denials to write?"""
        now = self.clock() if now is None else now
        with self._lock:
            if self._closed:
                return True
            return any(w.extra and now - w.start >= self.window for w in self._windows.values())
