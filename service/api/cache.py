"""A small bounded, thread-safe LRU map for what the API may keep between requests.

Only for values that cannot go stale (a stored release, an audit event under its hash):
nothing here expires, so nothing that can change may be put in it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, TypeVar

__all__ = ["Lru"]

_K = TypeVar("_K")
_V = TypeVar("_V")


class Lru(Generic[_K, _V]):
    """At most ``size`` entries; the least recently used one goes first."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("an LRU cache needs room for at least one entry")
        self._size = size
        self._items: OrderedDict[_K, _V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: _K) -> _V | None:
        """The value under ``key`` (now the most recently used), or None."""
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def get_many(self, keys: list[_K]) -> list[_V | None]:
        """:meth:`get` of each key, under one turn of the lock (an audit page asks for a
        hundred at a time)."""
        with self._lock:
            values = [self._items.get(key) for key in keys]
            for key, value in zip(keys, values, strict=True):
                if value is not None:
                    self._items.move_to_end(key)
            return values

    def put(self, key: _K, value: _V) -> None:
        """Keep ``value`` under ``key``, dropping the least recently used beyond the size."""
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
