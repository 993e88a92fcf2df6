"""Structured (JSON) logs. Log lines carry ids, counts and timings only: never tokens,
secrets, headers or request bodies.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from service import context

__all__ = ["configure_logging", "log"]

_logger = logging.getLogger("pprl")
# json.dumps(entry, default=str) builds an encoder for every call; one is enough
_encode = json.JSONEncoder(default=str).encode


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            "request_id": context.request_id.get(),
        }
        entry.update(getattr(record, "fields", {}))
        return _encode(entry)


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stderr for the ``pprl`` logger; uvicorn's access log is turned off
    (it would print query strings), our middleware logs each request instead."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter())
    _logger.handlers[:] = [handler]
    _logger.setLevel(level.upper())
    _logger.propagate = False


def log(event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one structured event (pass only ids, counts, timings and statuses)."""
    if _logger.isEnabledFor(level):
        # the record is made here, not by Logger.log, which walks the stack on every
        # call to find the caller's file and line: they were always this function's
        record = _logger.makeRecord(_logger.name, level, __file__, 0, event, (), None,
                                    func="log", extra={"fields": fields})  # fmt: skip
        _logger.handle(record)
