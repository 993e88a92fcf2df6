"""Signed checkpoints: an Ed25519 signature over (sequence, head hash).

A checkpoint pins the chain up to an event: anyone with the public key can check that
the log was not rewritten before it, even by someone able to recompute every hash. Only
the signer (:mod:`service.audit.signer`, in the worker) calls :func:`sign_checkpoint`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db.models import AuditCheckpoint, AuditHead

__all__ = ["checkpoint_message", "sign_checkpoint", "verify_checkpoint"]


def checkpoint_message(seq: int, head_hash: str) -> bytes:
    return f"pprl audit checkpoint v1\n{seq}\n{head_hash}".encode()


def sign_checkpoint(session: Session, key: Ed25519PrivateKey, *, manual: bool) -> AuditCheckpoint:
    """Sign the current head (inside the caller's transaction)."""
    from service.crypto import public_key_hex

    head = session.execute(select(AuditHead).where(AuditHead.id == 1)).scalar_one()
    existing = session.get(AuditCheckpoint, head.seq)
    if existing is not None:
        return existing
    row = AuditCheckpoint(
        seq=head.seq,
        head_hash=head.hash,
        signature=key.sign(checkpoint_message(head.seq, head.hash)).hex(),
        public_key=public_key_hex(key.public_key()),
        at=datetime.now(UTC).isoformat(timespec="seconds"),
        manual=manual,
    )
    session.add(row)
    session.flush()
    return row


def verify_checkpoint(
    public_key: Ed25519PublicKey, seq: int, head_hash: str, signature_hex: str
) -> bool:
    try:
        public_key.verify(bytes.fromhex(signature_hex), checkpoint_message(seq, head_hash))
    except (InvalidSignature, ValueError):
        return False
    return True
