"""``record(...)``: the one entry point that writes an audit event.

Call it inside the same transaction as the change it records, so either both are stored
or neither is. Writers are serialised by locking the single ``audit_head`` row (``FOR
UPDATE`` on PostgreSQL; ``BEGIN IMMEDIATE`` on SQLite), which keeps sequence numbers
gap-free and the chain linear under any number of concurrent writers.

``draft(...)`` and ``record_many(session, drafts)`` split that in two for the group-commit
writer: each event is checked and stamped with its request's id and client (in that
request's context), then a whole batch is chained under one lock of the head, inserted in
one statement and the head moved once. The chain is the same as recording the events one
by one in that order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import String, bindparam, insert, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from service import context
from service.audit.chain import canonical, event_hash
from service.db.models import AuditEvent, AuditHead

__all__ = ["SYSTEM", "Actor", "Draft", "draft", "record", "record_many"]

_MAX_DETAILS = 64 * 1024


@dataclass(frozen=True)
class Actor:
    """Who did it: a principal's name and role (``system`` for the service itself)."""

    name: str
    role: str


SYSTEM = Actor("system", "system")


@dataclass(frozen=True)
class Draft:
    """An event checked and stamped with its request, waiting for its place in the chain
    (its ``seq``, ``at`` and ``prev_hash`` are given when the head is locked)."""

    fields: dict[str, Any]  # the hashed fields but those three, ``details`` as an object
    details_json: str  # ``details`` as stored: canonical JSON


def _check_details(value: Any, path: str = "details") -> None:
    # Only plain JSON values: nothing that could smuggle an object's repr into the log.
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{path}: keys must be strings")
            _check_details(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_details(item, f"{path}[{i}]")
    elif not (value is None or isinstance(value, str | int | float | bool)):
        raise TypeError(f"{path}: {type(value).__name__} is not allowed in audit details")
    elif isinstance(value, bytes):
        raise TypeError(f"{path}: bytes are not allowed in audit details")


def _column_limit(column: str) -> int:
    column_type = AuditEvent.__table__.c[column].type
    assert isinstance(column_type, String) and column_type.length, column
    return column_type.length


# read once: looking them up in the table's metadata was a share of every event's cost
_LIMITS = {column: _column_limit(column) for column in ("actor", "subject", "client")}


def _clip(text: str | None, column: str) -> str | None:
    """Fit a caller-influenced string (a denied request's path, say) to its column.

    PostgreSQL refuses an over-long value where SQLite would store it; a refusal must
    still be audited, so the text is shortened (and marked) instead.
    """
    limit = _LIMITS[column]
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def draft(
    *,
    actor: Actor,
    action: str,
    outcome: str = "ok",
    project_id: str | None = None,
    subject: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> Draft:
    """Check an event and stamp it with the current request's id and client address.

    Raises ``TypeError`` for details that are not plain JSON, ``ValueError`` for details
    over 64 KiB. ``details`` holds counts, ids, names of figures and reasons; never
    record-level values, tokens or secrets.
    """
    body = dict(details or {})
    _check_details(body)
    details_json = canonical(body)
    if len(details_json) > _MAX_DETAILS:
        raise ValueError("audit details too large")
    fields = {
        "actor": _clip(actor.name, "actor"),
        "role": actor.role,
        "action": action,
        "project_id": project_id,
        "subject": _clip(subject, "subject"),
        "outcome": outcome,
        "details": json.loads(details_json),  # hashed as stored, not as the caller gave it
        "request_id": context.request_id.get(),
        "client": _clip(context.client_address.get(), "client"),
    }
    return Draft(fields, details_json)


# Core statements on the tables, built once. Building them for each batch (coercing the
# ORM attributes) and running them through the ORM (bulk insert and update machinery)
# cost the group-commit writer about three times what SQLite took to run them.
_HEAD = AuditHead.metadata.tables[AuditHead.__tablename__]
_LOCK_HEAD = select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == 1).with_for_update()
_INSERT_EVENTS = insert(AuditEvent.metadata.tables[AuditEvent.__tablename__])
_MOVE_HEAD = (
    update(_HEAD)
    .where(_HEAD.c.id == 1)
    .values(seq=bindparam("head_seq"), hash=bindparam("head_hash"))
)
_HEAD_KEY = identity_key(AuditHead, 1)


def record_many(session: Session, drafts: Sequence[Draft]) -> None:
    """Append ``drafts``, in order, to the hash-chained log inside ``session``'s
    transaction: one lock of the head, one INSERT of every row, one update of the head."""
    if not drafts:
        return
    # what the ORM statements did for us: the session's pending changes are written
    # before the head is locked (locks are taken in the order they were), and a head
    # this session loaded is read anew once it moves (below)
    session.flush()
    connection = session.connection()
    seq, prev_hash = connection.execute(_LOCK_HEAD).one()
    rows = []
    for item in drafts:
        seq += 1
        # stamped under the lock, so that times never run backwards along the chain
        at = datetime.now(UTC).isoformat(timespec="microseconds")
        event = {**item.fields, "seq": seq, "at": at, "prev_hash": prev_hash}
        prev_hash = event_hash(event)
        rows.append({**event, "details": item.details_json, "hash": prev_hash})
    connection.execute(_INSERT_EVENTS, rows)
    connection.execute(_MOVE_HEAD, {"head_seq": seq, "head_hash": prev_hash})
    head = session.identity_map.get(_HEAD_KEY)
    if head is not None:
        session.expire(head)


def record(
    session: Session,
    *,
    actor: Actor,
    action: str,
    outcome: str = "ok",
    project_id: str | None = None,
    subject: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Append one event to the hash-chained audit log inside ``session``'s transaction.

    ``details`` holds counts, ids, names of figures and reasons; never record-level
    values, tokens or secrets.
    """
    event = draft(actor=actor, action=action, outcome=outcome, project_id=project_id,
                  subject=subject, details=details)  # fmt: skip
    record_many(session, [event])
