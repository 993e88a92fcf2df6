"""Incremental verification: remember the last head this process verified.

A DPO page load verifies only the events after that head (and that the head itself is
unchanged and no checkpoint seen has vanished), instead of re-walking the whole log.
This cache is for speed only: the proof that stands against the operator is the DPO's
own receipt (``pprl audit verify``), kept where the operator cannot reach it.
"""

from __future__ import annotations

import threading
from dataclasses import replace

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.orm import Session

from service.audit.chain import ChainReport
from service.audit.receipt import Receipt
from service.audit.review import _checkpoints, _events, receipt_for, verify_stream
from service.crypto import public_key_hex

__all__ = ["VerifiedHeads"]


class VerifiedHeads:
    """Thread-safe memory of the last verified head of each (database, key)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._heads: dict[tuple[str, str], Receipt] = {}

    def forget(self) -> None:
        with self._lock:
            self._heads.clear()

    def verify(self, session: Session, public_key: Ed25519PublicKey, where: str) -> ChainReport:
        """Verify from the last head verified here (whole log the first time)."""
        key_hex = public_key_hex(public_key)
        with self._lock:
            since = self._heads.get((where, key_hex))
        checkpoints = _checkpoints(session)
        start = since.seq if since is not None else 1
        report = verify_stream(_events(session, start), checkpoints, public_key, since=since)
        if not report.ok:
            return report
        receipt = receipt_for(report, checkpoints, key_hex, since)
        if receipt is not None:
            with self._lock:
                current = self._heads.get((where, key_hex))
                if current is None or current.seq <= receipt.seq:
                    self._heads[(where, key_hex)] = receipt
        # the events before the remembered head were verified by an earlier call
        return replace(
            report,
            events=report.verified_up_to,
            verified_from=1,
            checkpoints_verified=len(receipt.checkpoints) if receipt else 0,
        )
