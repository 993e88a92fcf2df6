"""The audit hash chain: canonical event form, event hashes, and chain verification.

Pure functions over plain dicts, so a DPO can verify an export offline with nothing but
this module and the audit public key (``pprl audit verify --file export.jsonl``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["GENESIS", "HASHED_FIELDS", "ChainReport", "canonical", "event_hash", "verify_events"]

GENESIS = "0" * 64
HASHED_FIELDS = (
    "seq", "at", "actor", "role", "action", "project_id", "subject", "outcome", "details",
    "request_id", "client", "prev_hash",
)  # fmt: skip


def canonical(value: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, UTF-8 kept, no NaN."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def event_hash(event: Mapping[str, Any]) -> str:
    """SHA-256 over the canonical JSON of the hashed fields (``details`` as an object)."""
    body = {name: event.get(name) for name in HASHED_FIELDS}
    if isinstance(body["details"], str):
        body["details"] = json.loads(body["details"])
    return hashlib.sha256(canonical(body).encode()).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    """The outcome of verifying a chain: how far it holds and where it first breaks."""

    ok: bool
    events: int
    verified_up_to: int
    broken_at: int | None = None
    reason: str | None = None
    checkpoints_verified: int = 0

    def summary(self) -> str:
        if self.ok:
            checkpoints = (
                f"{self.checkpoints_verified} signed checkpoint"
                f"{'' if self.checkpoints_verified == 1 else 's'} valid"
                if self.checkpoints_verified
                else "no signed checkpoint yet"
            )
            return (
                f"verified: {self.events} events, chain intact up to event {self.verified_up_to}, "
                f"{checkpoints}"
            )
        return f"BROKEN at event {self.broken_at}: {self.reason}"


def verify_events(events: Iterable[Mapping[str, Any]]) -> ChainReport:
    """Recompute the chain over events in sequence order; name the first broken event.

    Detects an edited event (its hash no longer matches), a deleted event (a gap in the
    sequence or a ``prev_hash`` that does not match), and reordered events.
    """
    prev_hash = GENESIS
    expected_seq = 1
    count = 0
    last_good = 0
    for event in events:
        seq = int(event["seq"])
        if seq != expected_seq:
            reason = f"expected event {expected_seq} next but found {seq}: " + (
                "events are missing (deleted)" if seq > expected_seq else "events are out of order"
            )
            return ChainReport(False, count, last_good, broken_at=expected_seq, reason=reason)
        if event["prev_hash"] != prev_hash:
            return ChainReport(False, count, last_good, broken_at=seq,
                               reason="its prev_hash does not match the previous event's hash "
                               "(an event before it was removed, replaced or reordered)")  # fmt: skip
        if event_hash(event) != event["hash"]:
            return ChainReport(False, count, last_good, broken_at=seq,
                               reason="its content does not match its hash (it was edited)")  # fmt: skip
        prev_hash = str(event["hash"])
        last_good = seq
        expected_seq += 1
        count += 1
    return ChainReport(True, count, last_good)
