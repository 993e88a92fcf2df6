"""Waking when a file is moved into a directory: Linux inotify, or a short poll.

The enclave's early intake (``service.worker.streaming``) must start following an upload
as soon as the API puts its envelope in ``incoming/`` (by an atomic rename). Polling the
directory every 20 ms left a new upload waiting 10 ms on average, and woke an idle worker
fifty times a second. inotify wakes it when the envelope lands and never otherwise. It
is reached through ``ctypes`` (the standard library has no binding); where it is missing
(not Linux, or out of watches) or the directory does not exist yet (the API makes it on
its first upload), :meth:`DirectoryWake.wait` polls instead, and tries inotify again.
"""

from __future__ import annotations

import ctypes
import os
import select
import struct
import time
from pathlib import Path

__all__ = ["DirectoryWake"]

_IN_MOVED_TO = 0x00000080
_IN_DELETE_SELF, _IN_MOVE_SELF, _IN_IGNORED = 0x00000400, 0x00000800, 0x00008000
_GONE = _IN_DELETE_SELF | _IN_MOVE_SELF | _IN_IGNORED  # the directory itself went
_EVENT = struct.Struct("iIII")  # struct inotify_event, before its name
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
_POLL_SECONDS = 0.02  # without inotify: as before


def _libc() -> ctypes.CDLL | None:
    try:
        # this process's own symbols (libc among them): find_library("c") would run
        # ldconfig in a subprocess to look for it
        libc = ctypes.CDLL(None, use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        return libc
    except (OSError, AttributeError):
        return None


class DirectoryWake:
    """Waits for a file to be moved into ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fd = -1
        self._libc = _libc()
        self._poke_r, self._poke_w = os.pipe()  # lets another thread end a wait early
        os.set_blocking(self._poke_r, False)
        os.set_blocking(self._poke_w, False)

    def poke(self) -> None:
        """End the current (or next) :meth:`wait` now, from any thread."""
        try:
            os.write(self._poke_w, b"!")
        except OSError:  # BlockingIOError: already poked, the pipe is full
            pass

    def wait(self, timeout: float) -> None:
        """Return when something landed in the directory, or after ``timeout`` seconds
        (at most :data:`_POLL_SECONDS` when inotify is not watching it); may return
        early without cause, so the caller looks at the directory either way."""
        if self._fd < 0 and not self._watch():
            time.sleep(min(timeout, _POLL_SECONDS))
            return
        try:
            ready, _, _ = select.select([self._fd, self._poke_r], [], [], timeout)
            if self._poke_r in ready:
                os.read(self._poke_r, 1 << 10)
            if self._fd in ready and self._directory_went(os.read(self._fd, 1 << 16)):
                self._unwatch()  # removed or moved away: watch whatever is there next
        except OSError:  # the watch broke: poll, then watch again
            self._unwatch()

    def close(self) -> None:
        """Stop watching and release the descriptors (idempotent)."""
        self._unwatch()
        for fd in (self._poke_r, self._poke_w):
            if fd >= 0:
                os.close(fd)
        self._poke_r = self._poke_w = -1

    @staticmethod
    def _directory_went(events: bytes) -> bool:
        """Whether ``events`` (inotify's, back to back) say the directory itself went."""
        at = 0
        while at + _EVENT.size <= len(events):
            _wd, mask, _cookie, length = _EVENT.unpack_from(events, at)
            if mask & _GONE:
                return True
            at += _EVENT.size + length
        return False

    def _unwatch(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _watch(self) -> bool:
        if self._libc is None or not self.directory.is_dir():
            return False
        fd = int(self._libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC))
        if fd < 0:
            return False
        mask = _IN_MOVED_TO | _IN_DELETE_SELF | _IN_MOVE_SELF
        if self._libc.inotify_add_watch(fd, os.fsencode(self.directory), mask) < 0:
            os.close(fd)
            return False
        self._fd = fd
        return True
