"""Judging an upload while it streams in: the enclave's early intake.

The API writes each upload's envelope beside it in ``incoming/`` (``<name>.envelope``)
before it reads the body, then streams the sealed body to ``<name>.part``. This worker
thread watches that directory (``service.worker.dirwatch``: woken by inotify when an
envelope lands, or every 20 ms without it) and, for each new upload, starts a validator
child (``service.worker.validator.judge_stream``, under the same memory and CPU limits as
intake's) that follows the growing file: it authenticates and opens each sealed chunk as
it lands, hashes it, and checks each Parquet row group as soon as its bytes are in (the
footer copy at the front of a ``PPRLSUB2`` frame says where they lie). When the last
byte lands, what is left is the last row group and the count of repeated identities, so
the verdict is ready about when the API records the submission.

An acceptance is kept under the SHA-256 of exactly the bytes the child read (an upload
whose digest follows its body, ``pprl submit``'s default, is filed under it once the
child has read the last byte) and the project's terms it was judged under (project,
spec, key check value, policy, repeat limits). Intake (``service.worker.intake``) uses
it for a received submission whose recorded digest and terms are the same, and decides
it through the same audited transition as any other; this thread asks for that decision
as soon as the submission is recorded, so a verdict does not wait for the worker's poll
or for a run in progress.

Anything else (a rejection, an upload abandoned half way, a child past its limits, an
unreadable directory, more uploads at once than there are slots) keeps nothing: the
submission is then judged the ordinary way once received. The early path can make a
verdict sooner, never different.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from service.crypto.envelope import SIDECAR_SUFFIX, Envelope, EnvelopeError
from service.db import Database
from service.db.models import Project, Submission
from service.logs import log
from service.settings import Settings
from service.worker.dirwatch import DirectoryWake
from service.worker.intake import Verdict, judge_in_child, project_terms, validation_job

__all__ = ["EarlyIntake"]

_WATCH_SECONDS = 0.02
_RESCAN_SECONDS = 1.0  # with inotify, the directory is also looked at this often
_KEEP_SECONDS = 600.0  # an acceptance whose submission never arrives is forgotten
_RECORDED_WAIT_SECONDS = 30.0  # how long to look for the submission the API records
_MAX_SIDECAR = 16 << 10


@dataclass
class _Early:
    """One upload followed by a child: its verdict once the child answered."""

    done: threading.Event
    terms: tuple[Any, ...]
    size: int  # sealed bytes the envelope declares
    sidecar: Path  # while it exists, the body is still arriving
    verdict: Verdict | None = None
    at: float = 0.0


class EarlyIntake:
    """Validator children that follow uploads as they arrive; their acceptances by digest."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        private_key_hex: str,
        decide: Callable[[str], None],
        slots: int = 2,
    ) -> None:
        self.settings, self.db = settings, db
        self._key_hex = private_key_hex
        self._decide = decide  # intake's judgement of one received submission, by id
        self._uploads: dict[str, _Early] = {}  # by the envelope's sealed SHA-256
        # uploads whose digest follows their body: by sidecar name until the child has
        # read every byte (and so knows the digest), then filed under it
        self._unnamed: dict[str, _Early] = {}
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(slots)
        self._wake = DirectoryWake(settings.incoming_dir)

    def start(self, stop: threading.Event) -> threading.Thread:
        """Watch ``incoming/`` in a daemon thread until ``stop`` is set."""
        thread = threading.Thread(target=self._watch, args=(stop,), name="early-intake",
                                  daemon=True)  # fmt: skip
        thread.start()
        return thread

    def take(self, sealed_sha256: str, terms: tuple[Any, ...], size: int = -1) -> Verdict | None:
        """The acceptance of the upload with this digest under these terms (and of
        ``size`` sealed bytes), if a child judged it so (waiting for a child still reading
        it); else None."""
        with self._lock:
            early = self._uploads.get(sealed_sha256)
            # a received upload whose digest followed it may be one still being read: one
            # of the same size and terms whose body has all arrived (never a long upload
            # still coming in, which would hold up the judgement of every other)
            unnamed = [] if early is not None else [
                other for other in self._unnamed.values()
                if (other.size, other.terms) == (size, terms) and not other.sidecar.exists()
            ]  # fmt: skip
        for other in unnamed:
            other.done.wait(self.settings.validation_timeout_seconds)
        if unnamed:
            with self._lock:
                early = self._uploads.get(sealed_sha256)
        if early is None:
            return None
        early.done.wait(self.settings.validation_timeout_seconds)
        if early.verdict is None or early.terms != terms or not early.verdict.ok:
            return None
        if early.verdict.sealed_sha256 != sealed_sha256:
            return None
        return early.verdict

    def _watch(self, stop: threading.Event) -> None:
        incoming = self.settings.incoming_dir
        try:
            while not stop.is_set():
                # woken when an envelope lands or a slot frees (inotify; else every
                # 20 ms), and once a second regardless
                self._wake.wait(_RESCAN_SECONDS)
                self._scan(incoming)
        finally:
            self._wake.close()

    def _scan(self, incoming: Path) -> None:
        """Start a child for each new envelope in ``incoming`` (while slots are free)."""
        try:
            names = {p.name for p in incoming.glob(f"*{SIDECAR_SUFFIX}")}
        except OSError:
            return  # not there yet, or not ours to read: the ordinary path judges
        for name in sorted(names - self._seen):
            if not self._slots.acquire(blocking=False):
                continue  # busy: tried again when a slot frees, while it is still there
            self._seen.add(name)
            threading.Thread(target=self._follow, args=(incoming / name,),
                             name="early-intake-child", daemon=True).start()  # fmt: skip
        self._seen &= names
        self._forget_old()

    def _forget_old(self) -> None:
        cutoff = time.monotonic() - _KEEP_SECONDS
        with self._lock:
            for digest in [
                d for d, e in self._uploads.items() if e.done.is_set() and e.at < cutoff
            ]:
                del self._uploads[digest]

    def _follow(self, sidecar: Path) -> None:
        accepted = ""
        try:
            accepted = self._judge_arriving(sidecar)
        except Exception as exc:  # never the worker: the ordinary path judges instead
            log("early intake skipped an upload", error_type=type(exc).__name__)
        finally:
            self._slots.release()  # before waiting for the record: the child is done
            self._wake.poke()  # an upload that found no free slot may be waiting
        if accepted:
            self._decide_when_recorded(accepted)

    def _judge_arriving(self, sidecar: Path) -> str:
        """Follow the upload beside ``sidecar`` in a validator child; the digest of the
        bytes it accepted, or "" (nothing kept)."""
        arriving = self._job(sidecar)
        if arriving is None:
            return ""
        job, envelope = arriving
        early = _Early(threading.Event(), terms=project_terms(job), size=envelope.sealed_bytes,
                       sidecar=sidecar)  # fmt: skip
        follows = envelope.digest_follows
        with self._lock:
            if follows:
                self._unnamed[sidecar.name] = early
            else:
                before = self._uploads.get(envelope.sealed_sha256)
                if before is not None and not before.done.is_set():
                    return ""  # the same bytes arriving twice at once: one child is enough
                # (a retry after a cut-off upload sends the very same sealed bytes again)
                self._uploads[envelope.sealed_sha256] = early
        verdict = None
        try:
            verdict = judge_in_child(self.settings, job, envelope.sealed_bytes)
            early.verdict = verdict
        finally:
            early.at = time.monotonic()
            if follows:
                with self._lock:
                    del self._unnamed[sidecar.name]
                    if verdict is not None and verdict.sealed_sha256:
                        self._uploads[verdict.sealed_sha256] = early
            early.done.set()
        # an upload over before its child could open it (small ones often are) is judged
        # the ordinary way: worth a debug line, not an info one
        level = logging.DEBUG if verdict.reason == "missed" else logging.INFO
        log("upload judged while arriving", level, accepted=verdict.ok,
            reason=verdict.reason or None, validator_peak_rss_mb=verdict.peak_rss_mb)  # fmt: skip
        return verdict.sealed_sha256 if verdict.ok else ""

    def _job(self, sidecar: Path) -> tuple[dict[str, Any], Envelope] | None:
        """The validator's job for the upload beside ``sidecar`` and its envelope, or None
        if it names no project (the API refuses such an upload anyway)."""
        try:
            with sidecar.open("rb") as fh:
                envelope = Envelope.from_json(fh.read(_MAX_SIDECAR))
        except (OSError, EnvelopeError):
            return None  # gone already, or not an envelope: nothing to follow
        with self.db.snapshot() as session:
            project = session.get(Project, envelope.project_id)
            if project is None:
                return None
            job = validation_job(self.settings, self._key_hex, sidecar.with_suffix(".part"),
                                 envelope.to_json(), project)  # fmt: skip
        # an upload that stops arriving for this long is left to the ordinary path
        stall = min(self.settings.validation_timeout_seconds, 60.0)
        return {**job, "stream": True, "sidecar": str(sidecar), "arrival_seconds": stall}, envelope

    def _decide_when_recorded(self, sealed_sha256: str) -> None:
        """Ask intake to decide the submission the API records for these bytes.

        Stops as soon as a submission of these bytes is recorded, whatever its status (the
        worker's own poll may have decided it first: this loop once went on asking for
        a ``received`` one for its full 30 s, a database read every 20 ms, into the next
        upload). It looks every 20 ms for the first 2 s, when the record is due, then
        every 250 ms (an upload the API refused after the child accepted its bytes, e.g.
        a wrong digest after the body, is never recorded)."""
        started = time.monotonic()
        query = select(Submission.id, Submission.status).where(Submission.sha256 == sealed_sha256)
        while (waited := time.monotonic() - started) < _RECORDED_WAIT_SECONDS:
            with self.db.snapshot() as session:
                found = session.execute(query).all()
            if found:
                for submission_id, status in found:
                    if status == "received":
                        self._decide(submission_id)
                return
            time.sleep(_WATCH_SECONDS if waited < 2.0 else 0.25)
