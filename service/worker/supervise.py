"""Keeping the enclave worker there, and its runs bounded.

- :func:`run_limited` computes a run in a child process that the worker can kill: a run
  past ``PPRL_RUN_TIME_LIMIT_SECONDS`` (wall clock) is stopped and fails with a safe
  message, and the child dies with the worker, so a killed worker never leaves linkage
  computing as an orphan. The child comes from the worker's fork server, a fresh
  single-threaded interpreter: forking the worker itself, which has threads (heartbeat,
  signer, a database pool), let a child inherit locks held mid-operation and crash or
  hang at random (seen in CI as a run failing within a second of starting).
- :func:`die_with_parent` makes this process receive SIGKILL when its parent dies (the
  embedded worker of `pprl serve`, mid-run or not).
- :class:`Supervisor` restarts the embedded worker of `pprl serve` when it exits.
- :func:`beat_forever` / :func:`check_heartbeat`: the worker's own health check (a file
  it touches while it can reach the database), for `pprl worker --check`.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar

from service.logs import log
from service.processes import pid_alive

__all__ = [
    "ChildDied",
    "Supervisor",
    "beat_forever",
    "check_heartbeat",
    "die_with_parent",
    "heartbeat_path",
    "run_limited",
    "warm_fork_server",
]

_T = TypeVar("_T")
_PR_SET_PDEATHSIG = 1


def die_with_parent(expected_parent: int | None = None) -> bool:
    """Ask Linux to SIGKILL this process when its parent exits; True if set.

    If the parent is already gone (it died before the call), exit at once.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        ok = bool(libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        ok = False
    if expected_parent is not None and os.getppid() != expected_parent:
        os._exit(1)
    return ok


class ChildDied(Exception):
    """The run's child process ended without an answer (killed, out of memory)."""


def _import_run_failed() -> type[Exception]:
    from service.worker.enclave import RunFailed

    return RunFailed


def _watch_worker(worker: int) -> None:
    """End this process as soon as the worker ``worker`` is gone (its pidfd becomes
    readable). The fork server is this child's parent, so the parent-death signal alone
    would only fire once the fork server noticed the worker's death."""
    try:
        fd = os.pidfd_open(worker)
    except (OSError, AttributeError):  # no pidfd (old kernel): poll instead
        fd = None

    def watch() -> None:
        if fd is not None:
            select.select([fd], [], [])
        else:
            while pid_alive(worker):
                time.sleep(0.5)
        os._exit(1)

    if fd is None and not pid_alive(worker):
        os._exit(1)
    threading.Thread(target=watch, name="watch-worker", daemon=True).start()


def _child(
    conn: Connection, worker: int, fn: Callable[..., Any], args: Sequence[Any], url: str
) -> None:
    die_with_parent()  # the fork server: it exits when the worker does
    _watch_worker(worker)
    from service.db import Database

    db = Database(url)

    def progress(stage: str, done: float) -> None:
        conn.send(("progress", stage, done))

    run_failed = _import_run_failed()
    try:
        result = fn(*args[:1], db, *args[1:], progress)
        conn.send(("ok", result))
    except run_failed as exc:
        conn.send(("failed", str(exc)))
    except BaseException as exc:  # the type only: a message could hold a value
        conn.send(("error", type(exc).__name__))
    finally:
        db.dispose()
        conn.close()


def run_limited(
    fn: Callable[..., _T],
    settings: Any,
    *args: Any,
    progress: Callable[[str, float], None],
    url: str,
    limit_seconds: float,
) -> _T:
    """``fn(settings, db, *args, progress)`` in a killable child, within ``limit_seconds``.

    ``fn``, ``settings`` and ``args`` travel to the child by pickle (a module-level
    function, plain data). The child gets its own :class:`Database` for ``url``. Its ``RunFailed`` is re-raised
    here with the same safe message; a run over its limit is killed and raises
    ``RunFailed`` naming the limit; a child that dies or errors raises :class:`ChildDied`
    or a ``RuntimeError`` naming only the exception type.
    """
    run_failed = _import_run_failed()
    context = fork_server()
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(
        target=_child, args=(sender, os.getpid(), fn, (settings, *args), url), daemon=True
    )
    child.start()
    sender.close()
    deadline = time.monotonic() + limit_seconds
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise run_failed(
                    f"the run exceeded its time limit of {int(limit_seconds)} s and was stopped"
                )
            if not receiver.poll(min(remaining, 1.0)):
                if not child.is_alive() and not receiver.poll(0):
                    raise ChildDied("the run's process ended without an answer")
                continue
            try:
                message = receiver.recv()
            except EOFError:
                raise ChildDied("the run's process ended without an answer") from None
            kind = message[0]
            if kind == "progress":
                progress(message[1], message[2])
            elif kind == "ok":
                return message[1]  # type: ignore[no-any-return]
            elif kind == "failed":
                raise run_failed(message[1])
            else:
                raise RuntimeError(f"run process error ({message[1]})")
    finally:
        if child.is_alive():
            child.kill()
        child.join(timeout=30)
        receiver.close()


#: imported once by the fork server, so a validator child costs a fork rather than an
#: interpreter start-up. Only the validator's light modules: a run's child imports Splink
#: itself, because everything preloaded here also counts against the validator child's
#: address-space limit.
_PRELOAD = [
    "service.worker.validator",
    "service.submissions.validate",
    "service.crypto.envelope",
    "linkage.spec",
    "pyarrow.parquet",
    "pyarrow.compute",
]
_CONTEXT: Any = None


def fork_server() -> Any:
    """The worker's fork server context (one per process, started on first use).

    The server is a fresh, single-threaded interpreter: forking from it is safe where
    forking from the threaded worker is not. Validator and run children both come from it.
    """
    global _CONTEXT
    if _CONTEXT is None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_PRELOAD)
        _CONTEXT = context
    return _CONTEXT


def warm_fork_server() -> None:
    """Start the fork server now (its preload takes about a second), so a partner's first
    submission after the worker starts does not wait for it."""
    from multiprocessing import forkserver

    fork_server()  # sets the preload before the server starts
    forkserver.ensure_running()


def heartbeat_path(data_dir: Path) -> Path:
    return data_dir / "worker.alive"


def beat_forever(
    path: Path, reachable: Callable[[], bool], stop: threading.Event, interval: float = 10.0
) -> threading.Thread:
    """Touch ``path`` every ``interval`` s while ``reachable()`` (the database) holds."""

    def loop() -> None:
        while not stop.is_set():
            try:
                if reachable():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.touch()
            except Exception as exc:  # a failed beat is what the check reports
                log("worker heartbeat failed", error_type=type(exc).__name__)
            stop.wait(interval)

    thread = threading.Thread(target=loop, name="worker-heartbeat", daemon=True)
    thread.start()
    return thread


def check_heartbeat(path: Path, max_age: float = 60.0) -> str | None:
    """None if the worker beat within ``max_age`` s, else why it is unhealthy."""
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return f"{path}: no heartbeat yet (is the worker running?)"
    if age > max_age:
        return f"{path}: last heartbeat {age:.0f} s ago (more than {max_age:.0f} s)"
    return None


class Supervisor:
    """Runs a child command and restarts it when it exits, with a growing back-off.

    Used by `pprl serve` for its embedded worker: a worker killed with ``kill -9`` is back
    within seconds, and the run it held is taken over once its lease expires.
    """

    def __init__(self, command: Sequence[str], min_backoff: float = 1.0, max_backoff: float = 30.0):
        self.command = list(command)
        self.min_backoff, self.max_backoff = min_backoff, max_backoff
        self.child: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.child = subprocess.Popen(self.command)
        self._thread = threading.Thread(target=self._watch, name="worker-supervisor", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        backoff = self.min_backoff
        while not self._stop.is_set():
            child = self.child
            assert child is not None
            started = time.monotonic()
            code = child.wait()
            if self._stop.is_set():
                return
            if time.monotonic() - started > 60:
                backoff = self.min_backoff  # it ran well for a while: restart promptly
            log("embedded worker exited; restarting", code=code, in_seconds=backoff)
            if self._stop.wait(backoff):
                return
            backoff = min(backoff * 2, self.max_backoff)
            self.child = subprocess.Popen(self.command)
            self.restarts += 1

    def stop(self, timeout: float = 30.0) -> None:
        """Stop supervising and end the child (SIGTERM, then SIGKILL)."""
        self._stop.set()
        child = self.child
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if self._thread is not None:
            self._thread.join(timeout=5)
