"""The DPO's receipt: the last audit head they verified, kept on the DPO's side.

A receipt holds the sequence number and hash of the head a DPO verified, the audit public
key they verified it with, and every checkpoint they saw. The next verification must prove
that the log extends it (the event at the receipt's sequence still has the receipt's hash,
and every later event chains from it) and that no checkpoint seen before has vanished.
Because the receipt never lives with the operator, even an operator who holds the signing
key cannot rewrite, reorder or cut the history the DPO has seen without it being caught.

The receipt file is authenticated with an HMAC under a key that the DPO's tools create
next to it (mode 0600), so a receipt edited by someone else is refused, not trusted.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["Receipt", "ReceiptError", "default_receipt_path", "load_receipt", "save_receipt"]

FORMAT = "pprl-audit-receipt/1"


class ReceiptError(Exception):
    """A receipt that cannot be read or whose authentication fails."""


@dataclass(frozen=True)
class Receipt:
    """The head (``seq``, ``hash``) verified with ``public_key``, and the checkpoints seen."""

    seq: int
    hash: str
    public_key: str
    checkpoints: dict[int, str] = field(default_factory=dict)
    verified_at: str = ""

    def body(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "seq": self.seq,
            "hash": self.hash,
            "public_key": self.public_key,
            "checkpoints": {str(k): v for k, v in sorted(self.checkpoints.items())},
            "verified_at": self.verified_at,
        }


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "pprl"


def default_receipt_path(public_key_hex: str) -> Path:
    """One receipt per audit log, named after its public key, in the DPO's config dir."""
    tag = hashlib.sha256(public_key_hex.encode()).hexdigest()[:16]
    return config_dir() / "audit-receipts" / f"{tag}.json"


def _key_path(receipt: Path) -> Path:
    return receipt.parent / ".receipt-key"


def _mac_key(receipt: Path, *, create: bool) -> bytes:
    path = _key_path(receipt)
    if path.exists():
        return path.read_bytes()
    if not create:
        raise ReceiptError(f"{path}: the key that authenticates receipts is missing")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


def _mac(key: bytes, body: dict[str, Any]) -> str:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def save_receipt(path: Path, receipt: Receipt) -> None:
    """Write ``receipt`` atomically with its HMAC (creating the receipt key if needed)."""
    key = _mac_key(path, create=True)
    body = receipt.body()
    if not body["verified_at"]:
        body["verified_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps({**body, "mac": _mac(key, body)}, indent=1, sort_keys=True))
    tmp.replace(path)


def load_receipt(path: Path) -> Receipt:
    """The receipt in ``path``; :class:`ReceiptError` if unreadable or not authentic."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ReceiptError(f"{path}: not a readable receipt ({type(exc).__name__})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ReceiptError(f"{path}: not a pprl audit receipt")
    mac = data.pop("mac", "")
    key = _mac_key(path, create=False)
    if not isinstance(mac, str) or not hmac.compare_digest(mac, _mac(key, data)):
        raise ReceiptError(f"{path}: the receipt was altered (its MAC does not match)")
    try:
        return Receipt(
            seq=int(data["seq"]),
            hash=str(data["hash"]),
            public_key=str(data["public_key"]),
            checkpoints={int(k): str(v) for k, v in dict(data["checkpoints"]).items()},
            verified_at=str(data.get("verified_at", "")),
        )
    except (KeyError, TypeError, ValueError):
        raise ReceiptError(f"{path}: the receipt is missing a field") from None
