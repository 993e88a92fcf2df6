"""Per-request context (request id, client address) carried in context variables.

The middleware sets them; the audit log and the logs read them, so no function has to
pass them along.
"""

from __future__ import annotations

from contextvars import ContextVar

__all__ = ["client_address", "request_id"]

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
client_address: ContextVar[str | None] = ContextVar("client_address", default=None)
