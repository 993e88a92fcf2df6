"""Reading the audit log: filtered pages, exports that verify offline, verification.

Verification recomputes every hash from the first event and checks every checkpoint's
signature against a public key the verifier trusts (the service's, or one given by the
DPO), never against a key stored beside the data it protects.
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic_core import from_json, to_json
from sqlalchemy import (
    ColumnElement,
    Integer,
    Row,
    Select,
    String,
    bindparam,
    cast,
    func,
    select,
)
from sqlalchemy.orm import Session

from service.audit.chain import HASHED_FIELDS, ChainReport, event_hash, verify_events
from service.audit.checkpoints import verify_checkpoint
from service.audit.receipt import Receipt
from service.crypto import public_key_hex
from service.db.models import AuditCheckpoint, AuditEvent, AuditHead

__all__ = [
    "AuditFilter",
    "event_dict",
    "export_csv",
    "export_jsonl",
    "page",
    "page_json",
    "parse_export",
    "receipt_for",
    "verify",
    "verify_stream",
]

EXPORT_FORMAT = "pprl-audit-export/1"


@dataclass(frozen=True)
class AuditFilter:
    project_id: str | None = None
    actor: str | None = None
    action: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def event_dict(e: AuditEvent | Row[Any]) -> dict[str, Any]:
    """An event as hashed, from its ORM object or a row of the events table."""
    # pydantic-core's parser: about 4x faster than json.loads on these small documents,
    # which was most of an audit page's cost
    return {
        "seq": e.seq, "at": e.at, "actor": e.actor, "role": e.role, "action": e.action,
        "project_id": e.project_id, "subject": e.subject, "outcome": e.outcome,
        "details": from_json(e.details), "request_id": e.request_id, "client": e.client,
        "prev_hash": e.prev_hash, "hash": e.hash,
    }  # fmt: skip


_EVENTS = AuditEvent.__table__
_HEAD = AuditHead.__table__
# each filter field (and a page's ``before``) as a condition whose value is bound under
# the field's name: a page's statements depend only on which fields are set (its shape)
_CONDITIONS: dict[str, ColumnElement[bool]] = {
    "project_id": _EVENTS.c.project_id == bindparam("project_id"),
    "actor": _EVENTS.c.actor == bindparam("actor"),
    "action": _EVENTS.c.action.startswith(bindparam("action")),
    "outcome": _EVENTS.c.outcome == bindparam("outcome"),
    "since": _EVENTS.c.at >= bindparam("since"),
    "until": _EVENTS.c.at <= bindparam("until"),
    "before": _EVENTS.c.seq < bindparam("before"),
}


def _bound(f: AuditFilter, before: int | None) -> dict[str, Any]:
    """The values of the filter's set fields and of ``before``, by their bound names."""
    values: dict[str, Any] = {
        name: value
        for name in ("project_id", "actor", "action", "outcome")
        if (value := getattr(f, name))
    }
    if f.since:
        values["since"] = f.since.isoformat()
    if f.until:
        values["until"] = f.until.isoformat()
    if before is not None:
        # a sequence number is a 64-bit integer; a page link edited by hand may not be
        values["before"] = max(0, min(before, 2**63 - 1))
    return values


@dataclass(frozen=True)
class _PageQueries:
    total: Select[Any]  # the number of events the filter finds
    page: Select[Any]  # that number and the page's (seq, hash) pairs as one text
    rows: Select[Any]  # the page's pairs as rows


@functools.cache  # at most one entry per shape: 2**7
def _queries(shape: tuple[str, ...]) -> _PageQueries:
    """The statements of a page of this shape, built once.

    Building a statement, and the cache key SQLAlchemy derives from it, cost more than
    running it; a statement kept here keeps both. Every value is bound at execution.
    """
    filters = [_CONDITIONS[name] for name in shape if name != "before"]
    if filters:
        total = select(func.count()).select_from(_EVENTS).where(*filters)
    else:
        # unfiltered: the sequence is gap-free from 1, so the head is the count (a count(*)
        # over a million events on every page load was the page's largest cost at scale)
        total = select(_HEAD.c.seq).where(_HEAD.c.id == 1)
    rows = (
        select(_EVENTS.c.seq, _EVENTS.c.hash)
        .where(*(_CONDITIONS[name] for name in shape))
        .order_by(_EVENTS.c.seq.desc())
        .limit(bindparam("limit", type_=Integer))
    )
    newest = rows.subquery()
    # one row: the total and the pairs as one text, "seq hash,seq hash,...". SQLite's
    # driver lets go of the GIL at every statement and every row it steps to, and under
    # load each time another thread took it (a context switch): reading the total and a
    # hundred rows cost some 120 switches a page
    pairs = select(func.aggregate_strings(cast(newest.c.seq, String) + " " + newest.c.hash, ","))
    page = select(total.scalar_subquery(), pairs.scalar_subquery())
    return _PageQueries(total, page, rows)


_PAIR = re.compile(r"(\d+) ([0-9a-f]{64})")


def _pairs(text: str | None) -> list[tuple[int, str]] | None:
    """The (seq, hash) pairs in ``text``, newest first; None if an item is not a number
    and a hash (a hash edited in the database can hold anything, commas too)."""
    pairs = []
    for item in text.split(",") if text else ():
        match = _PAIR.fullmatch(item)
        if match is None:
            return None
        pairs.append((int(match[1]), match[2]))
    return sorted(pairs, reverse=True)  # the aggregate's order is not guaranteed


def _total(session: Session, values: dict[str, Any]) -> int:
    query = _queries(tuple(values)).total
    return int(session.connection().execute(query, values).scalar_one())


def page(
    session: Session, f: AuditFilter, *, limit: int, before: int | None
) -> tuple[list[dict[str, Any]], int]:
    """Newest first, ``limit`` events with seq < ``before``; and the filtered total."""
    values = _bound(f, before)
    query = (
        select(AuditEvent)
        .where(*(_CONDITIONS[name] for name in values))
        .order_by(AuditEvent.seq.desc())
        .limit(limit)
    )
    rows = session.execute(query, values).scalars()
    return [event_dict(e) for e in rows], _total(session, values)


class EventJson(Protocol):
    """Where :func:`page_json` keeps events' JSON between pages (an LRU map)."""

    def get_many(self, keys: list[tuple[int, str]]) -> list[bytes | None]: ...
    def put(self, key: tuple[int, str], value: bytes) -> None: ...


_MISSING = select(_EVENTS).where(_EVENTS.c.seq.in_(bindparam("seqs", expanding=True)))


def page_json(
    session: Session, f: AuditFilter, *, limit: int, before: int | None, known: EventJson
) -> bytes:
    """The page :func:`page` returns, as the JSON of ``{"events", "total", "next_before"}``.

    Events are append-only, so an event's JSON is kept under its (seq, hash) and only
    the page's (seq, hash) pairs and the events not seen before are read: a page under
    a stream of new events costs a few rows, not a hundred. Only an event whose content
    matches its hash is kept; a row changed since it was kept under an unchanged hash is
    shown as it was (its edit is for verification to catch, which reads the database).
    """
    values = _bound(f, before)
    # Core on the session's connection: these rows are plain values, not ORM objects
    conn = session.connection()
    queries, bound = _queries(tuple(values)), {**values, "limit": limit}
    total, text = conn.execute(queries.page, bound).one()
    keys = _pairs(text)
    if keys is None:  # an edited hash: read the pairs as rows
        keys = [(seq, h) for seq, h in conn.execute(queries.rows, bound)]
    parts = dict(zip(keys, known.get_many(keys), strict=True))
    missing = [seq for (seq, _h), part in parts.items() if part is None]
    if missing:
        for row in conn.execute(_MISSING, {"seqs": missing}):
            event = event_dict(row)
            fresh = to_json(event)
            parts[(row.seq, row.hash)] = fresh
            if event_hash(event) == row.hash:
                known.put((row.seq, row.hash), fresh)
    events = b",".join(part for key in keys if (part := parts.get(key)) is not None)
    more = len(keys) == limit and keys[-1][0] > 1
    tail = {"total": total, "next_before": keys[-1][0] if more else None}
    return b'{"events":[' + events + b"]," + to_json(tail)[1:]


def _events(session: Session, start: int = 1) -> Iterator[dict[str, Any]]:
    result = session.execute(
        select(AuditEvent)
        .where(AuditEvent.seq >= start)
        .order_by(AuditEvent.seq)
        .execution_options(yield_per=2000)
    )
    for event in result.scalars():
        yield event_dict(event)


def _checkpoints(session: Session) -> list[dict[str, Any]]:
    rows = session.execute(select(AuditCheckpoint).order_by(AuditCheckpoint.seq)).scalars()
    return [{"seq": c.seq, "head_hash": c.head_hash, "signature": c.signature,
             "public_key": c.public_key, "at": c.at, "manual": c.manual} for c in rows]  # fmt: skip


def _fail(report: ChainReport, reason: str, at: int | None = None) -> ChainReport:
    return replace(report, ok=False, broken_at=at, reason=reason, unsigned_tail=0)


def verify_stream(
    events: Iterable[dict[str, Any]],
    checkpoints: list[dict[str, Any]],
    public_key: Ed25519PublicKey,
    *,
    since: Receipt | None = None,
    stated_key: str | None = None,
    require_signed: bool = False,
) -> ChainReport:
    """Verify a chain and its checkpoints against a key the verifier trusts.

    ``events`` may start at event 1, or at the receipt's event when ``since`` is given (an
    export from that head on). With ``since``, the log must extend the receipt: its event
    still carries the receipt's hash, and no checkpoint the receipt saw has vanished.
    ``require_signed``: fail unless a checkpoint signed by the trusted key vouches for the
    chain (offline exports, which always end with one). The first problem is named.
    """
    key_hex = public_key_hex(public_key)
    empty = ChainReport(False, 0, 0)
    if stated_key is not None and stated_key != key_hex:
        return _fail(empty, f"wrong public key: the log states {stated_key[:16]}…, "
                     f"you trust {key_hex[:16]}…")  # fmt: skip
    if since is not None and since.public_key != key_hex:
        return _fail(empty, f"wrong public key: your receipt was verified with "
                     f"{since.public_key[:16]}…, not {key_hex[:16]}…")  # fmt: skip
    wanted = {int(cp["seq"]) for cp in checkpoints}
    if since is not None:
        wanted.add(since.seq)
    hashes: dict[int, str] = {}
    stream = iter(events)
    first = next(stream, None)
    partial = first is not None and since is not None and int(first["seq"]) > 1

    def remember() -> Iterator[dict[str, Any]]:
        if first is None:
            return
        for event in itertools.chain((first,), stream):
            seq = int(event["seq"])
            if seq in wanted:
                hashes[seq] = str(event["hash"])
            yield event

    anchor = (since.seq, since.hash) if partial and since is not None else None
    report = verify_events(remember(), anchor=anchor)
    if not report.ok:
        return report
    if since is not None and not partial:
        if report.verified_up_to < since.seq:
            return _fail(report, f"the log ends at event {report.verified_up_to}, before event "
                         f"{since.seq} that you verified: events were deleted", since.seq)  # fmt: skip
        if hashes.get(since.seq) != since.hash:
            return _fail(report, f"event {since.seq}, the head you verified before, was "
                         "rewritten: the log does not extend your receipt", since.seq)  # fmt: skip
    good, last_signed = 0, 0
    present: dict[int, str] = {}
    for cp in checkpoints:
        seq = int(cp["seq"])
        present[seq] = str(cp["head_hash"])
        stated = cp.get("public_key")
        if stated and stated != key_hex:
            return _fail(report, f"checkpoint at event {seq} is signed by another key "
                         f"({str(stated)[:16]}…): wrong public key or forged", seq)  # fmt: skip
        seen_before = since is not None and since.checkpoints.get(seq) == cp["head_hash"]
        if not seen_before and not verify_checkpoint(
            public_key, seq, str(cp["head_hash"]), str(cp["signature"])
        ):
            return _fail(report, f"checkpoint at event {seq} has an invalid signature (forged, "
                         "or not the public key you trust)", seq)  # fmt: skip
        if seq > report.verified_up_to:
            return _fail(report, f"checkpoint at event {seq} is beyond the end of the log "
                         f"(event {report.verified_up_to}): events were deleted", seq)  # fmt: skip
        if seq >= report.verified_from:
            if hashes.get(seq) != cp["head_hash"]:
                return _fail(report, f"the chain was rewritten: event {seq} no longer matches "
                             "its signed checkpoint", seq)  # fmt: skip
            good += 1
            last_signed = max(last_signed, seq)
    if since is not None:
        for seq, head_hash in sorted(since.checkpoints.items()):
            if present.get(seq) is None:
                return _fail(report, f"the checkpoint at event {seq}, which you verified "
                             "before, has vanished", seq)  # fmt: skip
            if present[seq] != head_hash:
                return _fail(report, f"the checkpoint at event {seq} differs from the one you "
                             "verified before (re-signed history)", seq)  # fmt: skip
        last_signed = max(last_signed, min(since.seq, report.verified_up_to))
    if require_signed and good == 0 and (since is None or report.verified_up_to > since.seq):
        return _fail(report, "nothing signed by the key you trust vouches for this log: it "
                     "cannot be proved (no valid checkpoint)")  # fmt: skip
    tail = max(report.verified_up_to - last_signed, 0) if report.events else 0
    return replace(report, checkpoints_verified=good, unsigned_tail=tail)


def receipt_for(report: ChainReport, checkpoints: list[dict[str, Any]], key_hex: str,
                since: Receipt | None = None) -> Receipt | None:  # fmt: skip
    """The receipt a successful verification leaves: its head and every checkpoint seen."""
    if not report.ok or report.head_hash is None:
        return since
    seen = dict(since.checkpoints) if since else {}
    seen.update({int(cp["seq"]): str(cp["head_hash"]) for cp in checkpoints})
    return Receipt(report.verified_up_to, report.head_hash, key_hex, seen)


def verify(session: Session, public_key: Ed25519PublicKey,
           since: Receipt | None = None) -> ChainReport:  # fmt: skip
    """Verify the log in the database (from the receipt's head on, when given)."""
    start = since.seq if since is not None else 1
    return verify_stream(_events(session, start), _checkpoints(session), public_key, since=since)


def export_jsonl(session: Session, key_hex: str, from_seq: int = 1) -> Iterator[str]:
    """Header, every event (from ``from_seq``), every checkpoint: one JSON object per line."""
    header: dict[str, Any] = {"type": "header", "format": EXPORT_FORMAT, "public_key": key_hex}
    if from_seq > 1:
        header["from_seq"] = from_seq
    yield json.dumps(header) + "\n"
    for event in _events(session, from_seq):
        yield json.dumps({"type": "event", **event}, sort_keys=True) + "\n"
    for cp in _checkpoints(session):
        yield json.dumps({"type": "checkpoint", **cp}, sort_keys=True) + "\n"


_CSV_COLUMNS = ["type", *HASHED_FIELDS, "hash", "head_hash", "signature", "public_key"]
# a spreadsheet runs a cell starting with one of these as a formula (CSV injection)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """Neutralise a text cell a spreadsheet would run: a leading ``'`` (reversibly: a cell
    that already starts with ``'`` gets one more, and :func:`parse_export` removes one)."""
    if isinstance(value, str) and value.startswith((*_FORMULA_START, "'")):
        return "'" + value
    return value


def _uncell(value: str) -> str:
    return value[1:] if value.startswith("'") else value


def export_csv(session: Session, key_hex: str, from_seq: int = 1) -> Iterator[str]:
    """The same as CSV: ``details`` as canonical JSON text; checkpoints as rows; text
    cells that a spreadsheet would run as formulas are neutralised."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, _CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerow({"type": "header", "public_key": key_hex, "details": EXPORT_FORMAT,
                     "seq": from_seq if from_seq > 1 else None})  # fmt: skip
    yield buf.getvalue()
    for event in _events(session, from_seq):
        buf.seek(0)
        buf.truncate()
        row = {"type": "event", **event, "details": json.dumps(event["details"], sort_keys=True)}
        writer.writerow({k: csv_cell(v) for k, v in row.items()})
        yield buf.getvalue()
    for cp in _checkpoints(session):
        buf.seek(0)
        buf.truncate()
        writer.writerow({"type": "checkpoint", "seq": cp["seq"], "head_hash": cp["head_hash"],
                         "signature": cp["signature"], "public_key": cp["public_key"]})  # fmt: skip
        yield buf.getvalue()


def parse_export(text: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str | None]:
    """Events, checkpoints and the exporter's stated public key from a JSONL or CSV export."""
    events: list[dict[str, Any]] = []
    checkpoints: list[dict[str, Any]] = []
    stated: str | None = None
    if text.lstrip().startswith("{"):
        for line in text.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            kind = item.pop("type", None)
            if kind == "header":
                stated = item.get("public_key")
            elif kind == "event":
                events.append(item)
            elif kind == "checkpoint":
                checkpoints.append(item)
        return events, checkpoints, stated
    for row in csv.DictReader(io.StringIO(text)):
        kind = row.pop("type")
        if kind == "header":
            stated = row.get("public_key") or None
        elif kind == "event":
            event: dict[str, Any] = {
                k: (_uncell(row[k]) if row[k] != "" else None) for k in (*HASHED_FIELDS, "hash")
            }
            event["seq"] = int(row["seq"])
            event["details"] = json.loads(_uncell(row["details"]))
            events.append(event)
        elif kind == "checkpoint":
            checkpoints.append({"seq": int(row["seq"]), "head_hash": row["head_hash"],
                                "signature": row["signature"],
                                "public_key": row.get("public_key") or None})  # fmt: skip
    return events, checkpoints, stated
