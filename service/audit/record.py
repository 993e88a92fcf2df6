"""``record(...)``: the one entry point that writes an audit event.

Call it inside the same transaction as the change it records, so either both are stored
or neither is. Writers are serialised by locking the single ``audit_head`` row (``FOR
UPDATE`` on PostgreSQL; ``BEGIN IMMEDIATE`` on SQLite), which keeps sequence numbers
gap-free and the chain linear under any number of concurrent writers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import String, select
from sqlalchemy.orm import Session

from service import context
from service.audit.chain import canonical, event_hash
from service.db.models import AuditEvent, AuditHead

__all__ = ["SYSTEM", "Actor", "record"]

_MAX_DETAILS = 64 * 1024


@dataclass(frozen=True)
class Actor:
    """Who did it: a principal's name and role (``system`` for the service itself)."""

    name: str
    role: str


SYSTEM = Actor("system", "system")


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


def _clip(text: str | None, column: str) -> str | None:
    """Fit a caller-influenced string (a denied request's path, say) to its column.

    PostgreSQL refuses an over-long value where SQLite would store it; a refusal must
    still be audited, so the text is shortened (and marked) instead.
    """
    column_type = AuditEvent.__table__.c[column].type
    assert isinstance(column_type, String) and column_type.length, column
    limit = column_type.length
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def record(
    session: Session,
    *,
    actor: Actor,
    action: str,
    outcome: str = "ok",
    project_id: str | None = None,
    subject: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the hash-chained audit log inside ``session``'s transaction.

    ``details`` holds counts, ids, names of figures and reasons; never record-level
    values, tokens or secrets.
    """
    body = dict(details or {})
    _check_details(body)
    details_json = canonical(body)
    if len(details_json) > _MAX_DETAILS:
        raise ValueError("audit details too large")
    head = session.execute(
        select(AuditHead).where(AuditHead.id == 1).with_for_update()
    ).scalar_one()
    event: dict[str, Any] = {
        "seq": head.seq + 1,
        "at": datetime.now(UTC).isoformat(timespec="microseconds"),
        "actor": _clip(actor.name, "actor"),
        "role": actor.role,
        "action": action,
        "project_id": project_id,
        "subject": _clip(subject, "subject"),
        "outcome": outcome,
        "details": json.loads(details_json),
        "request_id": context.request_id.get(),
        "client": _clip(context.client_address.get(), "client"),
        "prev_hash": head.hash,
    }
    digest = event_hash(event)
    row = AuditEvent(**{**event, "details": details_json, "hash": digest})
    session.add(row)
    head.seq = row.seq
    head.hash = digest
    session.flush()
    return row
