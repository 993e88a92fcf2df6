"""The enclave worker's main loop: claim, run with a renewed lease, finish, repeat.

Also purges submissions past their project's retention on a schedule.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass, field

from service.audit import Actor
from service.crypto import load_enclave_private_key
from service.db import Database
from service.logs import log
from service.settings import Settings
from service.worker.enclave import RunFailed, compute_release, save_anchors, sweep_stale_workdirs
from service.worker.queue import Claim, claim_next, finish_failed, finish_with_results, renew

__all__ = ["Worker"]


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
        swept = sweep_stale_workdirs(settings)
        if swept:
            log("worker swept stale work directories", count=swept)

    def run_once(self) -> str | None:
        """Claim and process one run; returns its id, or None when the queue is empty."""
        claim = claim_next(self.db, self.actor, self.settings.run_lease_seconds)
        if claim is None:
            return None
        log("run claimed", run=claim.run_id, attempt=claim.attempt)
        beat = _Heartbeat()
        thread = threading.Thread(target=self._heartbeat, args=(claim, beat), daemon=True)
        thread.start()

        def progress(stage: str, done: float) -> None:
            beat.stage, beat.progress = stage, done

        try:
            released, epsilon, anchors = compute_release(
                self.settings, self.db, self.key, claim, progress
            )
            beat.stop.set()
            thread.join()
            if finish_with_results(self.db, claim, self.actor, released, epsilon):
                save_anchors(self.settings, self.key, claim.project_id, anchors)
                log("run done", run=claim.run_id)
            else:
                log("run lost its lease; result discarded", run=claim.run_id)
        except RunFailed as exc:
            beat.stop.set()
            finish_failed(self.db, claim, self.actor, str(exc))
            log("run failed", run=claim.run_id, reason=str(exc))
        except Exception as exc:  # never let a record value reach the message
            beat.stop.set()
            finish_failed(self.db, claim, self.actor, f"internal error ({type(exc).__name__})")
            log("run failed", run=claim.run_id, error_type=type(exc).__name__)
        finally:
            beat.stop.set()
        return claim.run_id

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
        log("worker started", worker=self.actor.name)
        while not stop.is_set():
            if parent_pid is not None and os.getppid() != parent_pid:
                log("worker exiting: its server is gone")
                return
            self.purge_if_due()
            if self.run_once() is None:
                stop.wait(self.settings.worker_poll_seconds)
