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
    """The outcome of verifying a chain: how far it holds and where it first breaks.

    ``unsigned_tail`` counts the events after the last checkpoint that verified: the chain
    proves they were not reordered, but nothing signed vouches for them yet (amber).
    """

    ok: bool
    events: int
    verified_up_to: int
    broken_at: int | None = None
    reason: str | None = None
    checkpoints_verified: int = 0
    unsigned_tail: int = 0
    verified_from: int = 1
    head_hash: str | None = None

    @property
    def warning(self) -> str | None:
        """Amber: what holds but is not yet vouched for by a signature."""
        if not self.ok or not self.unsigned_tail:
            return None
        return (
            f"{self.unsigned_tail} event{'' if self.unsigned_tail == 1 else 's'} after the "
            "last signed checkpoint (not yet signed)"
        )

    def as_dict(self) -> dict[str, Any]:
        """Every field plus ``summary`` and ``warning``, for JSON output."""
        return {**self.__dict__, "warning": self.warning, "summary": self.summary()}

    def summary(self) -> str:
        if self.ok:
            checkpoints = (
                f"{self.checkpoints_verified} signed checkpoint"
                f"{'' if self.checkpoints_verified == 1 else 's'} valid"
                if self.checkpoints_verified
                else "no signed checkpoint yet"
            )
            since = f" from event {self.verified_from}" if self.verified_from > 1 else ""
            tail = f"; warning: {self.warning}" if self.warning else ""
            return (
                f"verified{since}: {self.events} events, chain intact up to event "
                f"{self.verified_up_to}, {checkpoints}{tail}"
            )
        return f"BROKEN at event {self.broken_at}: {self.reason}"


def verify_events(
    events: Iterable[Mapping[str, Any]], *, anchor: tuple[int, str] | None = None
) -> ChainReport:
    """Recompute the chain over events in sequence order; name the first broken event.

    Detects an edited event (its hash no longer matches), a deleted event (a gap in the
    sequence or a ``prev_hash`` that does not match), and reordered events. With
    ``anchor=(seq, hash)`` (a head verified before) the events must start at that event,
    which must still carry that hash: the log then provably extends the anchor.
    """
    prev_hash = GENESIS
    expected_seq = 1
    count = 0
    last_good = 0
    first = True
    for event in events:
        seq = int(event["seq"])
        if first and anchor is not None:
            first = False
            if seq != anchor[0]:
                return ChainReport(False, 0, 0, broken_at=anchor[0], verified_from=anchor[0],
                                   reason=f"event {anchor[0]}, the head you verified before, is "
                                   "missing: the log was cut or renumbered")  # fmt: skip
            if event_hash(event) != event["hash"] or event["hash"] != anchor[1]:
                return ChainReport(False, 0, 0, broken_at=seq, verified_from=seq,
                                   reason="the head you verified before was rewritten: the log "
                                   "no longer extends your receipt")  # fmt: skip
            prev_hash, expected_seq, last_good, count = anchor[1], seq + 1, seq, 1
            continue
        first = False
        if seq != expected_seq:
            reason = f"expected event {expected_seq} next but found {seq}: " + (
                "events are missing (deleted)" if seq > expected_seq else "events are out of order"
            )
            return ChainReport(False, count, last_good, broken_at=expected_seq, reason=reason,
                               verified_from=anchor[0] if anchor else 1)  # fmt: skip
        if event["prev_hash"] != prev_hash:
            return ChainReport(False, count, last_good, broken_at=seq,
                               verified_from=anchor[0] if anchor else 1,
                               reason="its prev_hash does not match the previous event's hash "
                               "(an event before it was removed, replaced or reordered)")  # fmt: skip
        if event_hash(event) != event["hash"]:
            return ChainReport(False, count, last_good, broken_at=seq,
                               verified_from=anchor[0] if anchor else 1,
                               reason="its content does not match its hash (it was edited)")  # fmt: skip
        prev_hash = str(event["hash"])
        last_good = seq
        expected_seq += 1
        count += 1
    if anchor is not None and first:
        return ChainReport(False, 0, 0, broken_at=anchor[0], verified_from=anchor[0],
                           reason=f"the log ends before event {anchor[0]}, the head you verified "
                           "before: events were deleted")  # fmt: skip
    return ChainReport(True, count, last_good, verified_from=anchor[0] if anchor else 1,
                       head_hash=prev_hash if count else None)  # fmt: skip
