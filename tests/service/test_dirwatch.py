"""The early intake's wake-up: an envelope renamed into ``incoming/`` ends the wait at
once; nothing else does, bar a poke; a directory made late, or made anew, is watched."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

from service.worker.dirwatch import DirectoryWake


def _timed_wait(wake: DirectoryWake, timeout: float) -> float:
    started = time.monotonic()
    wake.wait(timeout)
    return time.monotonic() - started


def _rename_in(directory: Path, name: str, after: float) -> threading.Timer:
    def land() -> None:
        tmp = directory / f".{name}.tmp"
        tmp.write_text("{}")
        os.replace(tmp, directory / name)  # as the API writes an envelope

    timer = threading.Timer(after, land)
    timer.start()
    return timer


def test_a_rename_into_the_directory_ends_the_wait(tmp_path: Path) -> None:
    wake = DirectoryWake(tmp_path)
    try:
        wake.wait(0.01)  # starts watching
        assert _timed_wait(wake, 0.3) >= 0.25  # nothing landed: the whole timeout
        timer = _rename_in(tmp_path, "a.envelope", 0.1)
        waited = _timed_wait(wake, 5.0)
        timer.join()
        assert 0.05 < waited < 2.0, waited
        threading.Timer(0.1, wake.poke).start()  # a freed slot ends it too
        assert _timed_wait(wake, 5.0) < 2.0
    finally:
        wake.close()
    wake.poke()  # after close: harmless


def test_a_directory_made_late_or_anew_is_watched(tmp_path: Path) -> None:
    incoming = tmp_path / "incoming"
    wake = DirectoryWake(incoming)
    try:
        # not there yet (the API makes it on its first upload): a short poll, no error
        assert _timed_wait(wake, 5.0) < 1.0
        incoming.mkdir()
        wake.wait(0.01)  # now watched
        timer = _rename_in(incoming, "b.envelope", 0.1)
        assert _timed_wait(wake, 5.0) < 2.0
        timer.join()
        # removed and made again: the watch hears it go, and the new one is watched
        shutil.rmtree(incoming)
        incoming.mkdir()
        for _ in range(3):
            wake.wait(0.05)
        timer = _rename_in(incoming, "c.envelope", 0.1)
        assert _timed_wait(wake, 5.0) < 2.0
        timer.join()
    finally:
        wake.close()
