"""The checkpoint signer: the only holder of the audit signing key, outside the API.

The API (or a DPO's command) asks for a checkpoint by inserting a row in
``audit_checkpoint_requests``; the signer, a thread in the enclave worker, signs the
current head, marks the requests done, and also signs on its own every
``checkpoint_every`` events. The API process never loads the signing key, so an
operator on the API host cannot sign a rewritten history.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from service.audit.checkpoints import sign_checkpoint
from service.db import Database
from service.db.models import AuditCheckpoint, AuditCheckpointRequest, AuditHead
from service.logs import log
from service.settings import Settings

__all__ = ["Signer", "request_checkpoint", "signed_seq", "start_signer", "wait_for_checkpoint"]


def request_checkpoint(session: Session, requested_by: str) -> int:
    """Ask the signer to sign the head (inside the caller's transaction); the request id."""
    row = AuditCheckpointRequest(
        requested_at=datetime.now(UTC), requested_by=requested_by[:200], signed_seq=None
    )
    session.add(row)
    session.flush()
    return row.id


def signed_seq(session: Session, request_id: int) -> int | None:
    """The checkpoint's sequence number once the request was serviced, else None."""
    return session.execute(
        select(AuditCheckpointRequest.signed_seq).where(AuditCheckpointRequest.id == request_id)
    ).scalar()


def wait_for_checkpoint(db: Database, request_id: int, timeout: float) -> int | None:
    """Poll until the signer serviced ``request_id`` (its checkpoint's seq), or None."""
    deadline = time.monotonic() + timeout
    while True:
        with db.snapshot() as session:
            seq = signed_seq(session, request_id)
        if seq is not None or time.monotonic() >= deadline:
            return seq
        time.sleep(0.1)


class Signer:
    """Signs requested checkpoints, and one every ``every`` events."""

    def __init__(self, db: Database, key: Ed25519PrivateKey, every: int = 100) -> None:
        self.db, self.key, self.every = db, key, max(every, 1)

    def _due(self) -> bool:
        # a read-only look first: most polls find nothing to do and take no write lock
        with self.db.snapshot() as session:
            pending = session.execute(
                select(AuditCheckpointRequest.id)
                .where(AuditCheckpointRequest.signed_seq.is_(None))
                .limit(1)
            ).first()
            if pending is not None:
                return True
            head = session.execute(select(AuditHead.seq).where(AuditHead.id == 1)).scalar() or 0
            last = session.execute(select(func.max(AuditCheckpoint.seq))).scalar() or 0
            return head - last >= self.every

    def service_once(self) -> int | None:
        """Sign the head if a request is pending or ``every`` events passed; its seq."""
        if not self._due():
            return None
        with self.db.transaction() as session:
            pending = list(
                session.execute(
                    select(AuditCheckpointRequest.id).where(
                        AuditCheckpointRequest.signed_seq.is_(None)
                    )
                ).scalars()
            )
            head = session.execute(select(AuditHead).where(AuditHead.id == 1)).scalar_one()
            last = session.execute(select(func.max(AuditCheckpoint.seq))).scalar() or 0
            if not pending and head.seq - last < self.every:
                return None
            if head.seq == 0:
                seq = 0  # nothing to sign yet: an empty log
            else:
                seq = sign_checkpoint(session, self.key, manual=bool(pending)).seq
            if pending:
                session.execute(
                    update(AuditCheckpointRequest)
                    .where(AuditCheckpointRequest.id.in_(pending))
                    .values(signed_seq=seq, signed_at=datetime.now(UTC))
                )
            return seq

    def run(self, stop: threading.Event, interval: float = 0.25) -> None:
        """Service requests until ``stop`` is set; a failed attempt is retried."""
        while not stop.is_set():
            try:
                self.service_once()
            except Exception as exc:  # the database may be briefly unavailable
                log("audit signer: attempt failed", error_type=type(exc).__name__)
                stop.wait(2.0)
            stop.wait(interval)

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), name="audit-signer", daemon=True)
        thread.start()
        return thread


def start_signer(
    settings: Settings, db: Database, stop: threading.Event
) -> threading.Thread | None:
    """Start the signer thread where the signing key is readable (the worker); else None."""
    from service.audit.keys import write_audit_public_key
    from service.crypto import KeyFileError, load_signing_key

    try:
        key = load_signing_key(settings.audit_signing_key_path)
        write_audit_public_key(settings)
    except (KeyFileError, OSError) as exc:
        log("audit signer not started: no readable signing key", error_type=type(exc).__name__)
        return None
    log("audit signer started")
    return Signer(db, key, settings.checkpoint_every).start(stop)
