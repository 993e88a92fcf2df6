"""The enclave worker's main loop: claim, run with a renewed lease, finish, repeat.

Also purges submissions past their project's retention on a schedule.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from service.audit import Actor
from service.crypto import load_enclave_private_key
from service.db import Database
from service.logs import log
from service.settings import Settings
from service.worker.enclave import (
    GENERIC_FAILURE,
    RunFailed,
    compute_release,
    state_dir,
    sweep_stale_workdirs,
)
from service.worker.intake import judge_submission, validate_received
from service.worker.queue import Claim, claim_next, finish_failed, finish_with_results, renew
from service.worker.revalidate import revalidate_untagged
from service.worker.spark import stop_worker_spark, sweep_spark_scratch
from service.worker.state import EnclaveState, prune_states, store_state
from service.worker.streaming import EarlyIntake
from service.worker.supervise import run_limited, warm_fork_server

__all__ = ["Worker"]


def _compute(
    settings: Settings, db: Database, key: bytes, claim: Claim, progress: Any
) -> tuple[dict[str, Any], float, EnclaveState]:
    """:func:`compute_release` in the run's child: the key crosses the pipe to the child
    (a private pipe between two enclave processes) as raw bytes, because key objects do
    not pickle."""
    return compute_release(settings, db, X25519PrivateKey.from_private_bytes(key), claim, progress)


@dataclass
class _Heartbeat:
    stage: str = "starting"
    progress: float = 0.0
    lost: bool = False
    stop: threading.Event = field(default_factory=threading.Event)


class Worker:
    """One enclave worker process: holds the enclave private key, nothing else does."""

    def __init__(self, settings: Settings, db: Database | None = None) -> None:
        self.settings = settings
        self.db = db or Database(settings.url)
        self.key = load_enclave_private_key(settings.enclave_private_key_path)
        self.actor = Actor(f"worker:{socket.gethostname()}:{os.getpid()}", "enclave")
        self._last_purge = 0.0
        self.early: EarlyIntake | None = None  # started by run_forever
        warm_fork_server()
        swept = sweep_stale_workdirs(settings) + sweep_spark_scratch(settings)
        if swept:
            log("worker swept stale work directories", count=swept)

    def run_once(self) -> str | None:
        """Claim and process one run; returns its id, or None when the queue is empty.

        Received submissions are judged first, so a run links what was accepted."""
        self.validate_received()
        claim = claim_next(self.db, self.actor, self.settings.run_lease_seconds)
        if claim is None:
            return None
        log("run claimed", run=claim.run_id, attempt=claim.attempt)
        # a run taken over after a kill -9 may find the dead worker's computing child
        # still exiting at start-up: sweep again now, so its scratch does not outlive it
        if sweep_stale_workdirs(self.settings):
            log("worker swept stale work directories before a run")
        beat = _Heartbeat()
        thread = threading.Thread(target=self._heartbeat, args=(claim, beat), daemon=True)
        thread.start()

        def progress(stage: str, done: float) -> None:
            beat.stage, beat.progress = stage, done

        started = time.monotonic()
        try:
            # here, not in the run's child: validating needs a child of its own
            revalidate_untagged(self.settings, self.db, self.key, self.actor, claim)
            # in a child process this worker can kill: a wall-clock limit per run, and no
            # orphaned computation if this worker dies
            released, epsilon, state = run_limited(
                _compute, self.settings, self.key.private_bytes_raw(), claim, progress=progress,
                url=self.settings.url, limit_seconds=self.settings.run_time_limit_seconds,
            )  # fmt: skip
            # the next state is on disk before the release commits; the old one goes after
            store_state(state_dir(self.settings), self.key, state)
            self._hold(started, beat)
            beat.stop.set()
            thread.join()
            outcome = finish_with_results(self.db, claim, self.actor, released, epsilon)
            if outcome in ("done", "held"):
                prune_states(state_dir(self.settings), claim.project_id, state.version)
                log("run " + outcome, run=claim.run_id)
            elif outcome == "state_moved":
                finish_failed(self.db, claim, self.actor,
                              "another release of this project was stored meanwhile; run again")  # fmt: skip
                log("run failed: enclave state moved", run=claim.run_id)
            elif outcome == "unreserved":
                finish_failed(self.db, claim, self.actor,
                              "the release needs more privacy budget than the run reserved")  # fmt: skip
                log("run failed: budget not reserved", run=claim.run_id)
            else:
                log("run lost its lease; result discarded", run=claim.run_id)
        except RunFailed as exc:
            self._hold(started, beat)
            beat.stop.set()
            finish_failed(self.db, claim, self.actor, str(exc))
            log("run failed", run=claim.run_id, reason=str(exc))
        except Exception as exc:  # never let a record value reach the message
            # nor which error it was: that could depend on one person being in the data
            self._hold(started, beat)
            beat.stop.set()
            finish_failed(self.db, claim, self.actor, GENERIC_FAILURE)
            log("run failed", run=claim.run_id, error_type=type(exc).__name__)
        finally:
            beat.stop.set()
        return claim.run_id

    def _hold(self, started: float, beat: _Heartbeat) -> None:
        """Wait (lease still renewed) until the run's age is a multiple of the quantum, so
        a release and a failure of similar runs are stored at the same times."""
        quantum = self.settings.run_time_quantum
        if quantum <= 0:
            return
        elapsed = time.monotonic() - started
        target = max(math.ceil(elapsed / quantum), 1) * quantum
        beat.stop.wait(max(target - elapsed, 0.0))

    def validate_received(self) -> int:
        """Open and judge received submissions (child process, limits); returns how many."""
        return validate_received(self.settings, self.db, self.key, self.actor, early=self.early)

    def _judge_early(self, submission_id: str) -> None:
        judge_submission(self.settings, self.db, self.key, self.actor, submission_id, self.early)

    def _heartbeat(self, claim: Claim, beat: _Heartbeat) -> None:
        interval = max(self.settings.run_lease_seconds / 3, 0.5)
        while not beat.stop.wait(min(interval, 1.0)):
            if not renew(
                self.db,
                claim,
                self.actor,
                self.settings.run_lease_seconds,
                beat.stage,
                beat.progress,
            ):
                beat.lost = True
                return

    def purge_if_due(self) -> int:
        from service.retention import purge_expired

        now = time.monotonic()
        if now - self._last_purge < self.settings.purge_interval_seconds:
            return 0
        self._last_purge = now
        return purge_expired(self.settings, self.db, self.actor)

    def run_forever(
        self, stop: threading.Event | None = None, parent_pid: int | None = None
    ) -> None:
        """Poll for runs until ``stop`` is set, or until ``parent_pid`` is gone (an embedded
        worker must not outlive a server that was killed)."""
        stop = stop or threading.Event()
        from service.audit.signer import start_signer

        start_signer(self.settings, self.db, stop)  # the signing key lives here, not in the API
        if self.settings.stream_validation:
            self.early = EarlyIntake(self.settings, self.db, self.key.private_bytes_raw().hex(),
                                     decide=self._judge_early)  # fmt: skip
            self.early.start(stop)
        log("worker started", worker=self.actor.name)
        while not stop.is_set():
            if parent_pid is not None and os.getppid() != parent_pid:
                log("worker exiting: its server is gone")
                return
            self.purge_if_due()
            if self.run_once() is None:
                stop.wait(self.settings.worker_poll_seconds)
        stop_worker_spark()  # (also at exit, for the return above)
