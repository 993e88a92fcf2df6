"""Identical reads that are asked for together share one read (a "single flight").

Under load many requests ask for the same audit page at once, and each read it in a trip
of its own to the threadpool: handing the work to a thread and back, and the GIL with
it, cost more than the read (tens of context switches a page). Here the first request
for a key starts the read; requests for the same key that come before that read begins
wait for it and get its result.

Never stale: a read is joined only while it waits for its turn (a database slot, a
thread), so it begins after every request that shares it arrived and sees every change
committed before any of them did. A request that comes once the read began starts, or
joins, the next one.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["SharedReads"]

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


class SharedReads(Generic[_K, _V]):
    """The reads not begun yet, by key, that later requests for the same key join."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # a read is taken off in the thread that runs it
        self._waiting: dict[tuple[asyncio.AbstractEventLoop, _K], asyncio.Task[_V]] = {}

    async def read(self, key: _K, run: Callable[[Callable[[], None]], Awaitable[_V]]) -> _V:
        """The result of ``run(begin)``, shared with the requests for ``key`` that come
        before it calls ``begin()``, which it must do right before it reads."""
        # by event loop too: a task can be awaited only in its own (one per process when
        # serving; tests and tools may run several)
        key_in_loop = (asyncio.get_running_loop(), key)
        with self._lock:
            task = self._waiting.get(key_in_loop)
            if task is None:
                task = asyncio.ensure_future(run(functools.partial(self._begin, key_in_loop)))
                self._waiting[key_in_loop] = task
                task.add_done_callback(functools.partial(self._forget, key_in_loop))
        # shielded: a request that goes away does not cancel the read the others wait for
        return await asyncio.shield(task)

    def _begin(self, key: tuple[asyncio.AbstractEventLoop, _K]) -> None:
        with self._lock:
            # the entry is this read's: another for the key is made only once it is gone
            self._waiting.pop(key, None)

    def _forget(self, key: tuple[asyncio.AbstractEventLoop, _K], task: asyncio.Task[_V]) -> None:
        # a read that failed before it began (no slot, say) is not joined either
        with self._lock:
            if self._waiting.get(key) is task:
                del self._waiting[key]
