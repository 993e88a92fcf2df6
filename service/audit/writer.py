"""Group commit for audit events that a response must wait for (reads of releases).

Every read of a release is audited, and the response is sent only once its event is
committed: a release never leaves without its event. Written one transaction per
request, those events queued every reader behind one write lock (on SQLite, the
database's only one) for a whole request each. Here one writer thread takes every
event queued while the previous commit ran and writes them all, in queue order, in one
transaction; each waiting request resumes when that commit is done. Under load many
requests share one commit; alone, a request waits for its own.

Nothing is lost on a crash that a client was told about: an event not yet committed
belongs to a request that has not answered (its client gets no data, only a broken
connection). The events are chained in the order their requests queued them.
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.audit.record import Actor, draft, record_many
from service.db import Database

__all__ = ["AuditWriter"]

_MAX_BATCH = 500  # events per transaction: bounds one commit's time under a flood


@dataclass
class _Pending:
    fields: dict[str, Any]
    context: contextvars.Context  # the request's id and client address, as draft() reads them
    loop: asyncio.AbstractEventLoop
    done: asyncio.Future[None]


def _settle(done: asyncio.Future[None], error: BaseException | None) -> None:
    if done.done():  # the request was cancelled meanwhile; its event is written anyway
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


class AuditWriter:
    """One background thread committing queued audit events in groups."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._queue: queue.SimpleQueue[_Pending] = queue.SimpleQueue()
        self._start = threading.Lock()
        self._thread: threading.Thread | None = None

    async def record(
        self,
        *,
        actor: Actor,
        action: str,
        project_id: str | None = None,
        subject: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Append one event (as :func:`service.audit.record`) and return once it is
        committed; raises what the write raised (the caller answers 500, sends nothing)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        fields = {"actor": actor, "action": action, "project_id": project_id,
                  "subject": subject, "details": dict(details or {})}  # fmt: skip
        self._ensure_thread()
        self._queue.put(_Pending(fields, contextvars.copy_context(), loop, done))
        await done

    def _ensure_thread(self) -> None:
        with self._start:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < _MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._write(batch)

    def _write(self, batch: list[_Pending]) -> None:
        error: BaseException | None = None
        try:
            # checked and stamped before the transaction, which then holds the head (on
            # SQLite, the write lock) only to chain and insert the batch
            drafts = [item.context.run(draft, **item.fields) for item in batch]
            with self._db.transaction() as session:
                record_many(session, drafts)
        except Exception as exc:
            if len(batch) > 1:  # one bad event must not fail the others: write each alone
                for item in batch:
                    self._write([item])
                return
            error = exc  # its request answers 500 and sends nothing
        for item in batch:
            try:
                item.loop.call_soon_threadsafe(_settle, item.done, error)
            except RuntimeError:  # that request's event loop is gone (server stopped)
                pass
