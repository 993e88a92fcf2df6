"""The edges of a request: a client that goes away is a disconnect (499 in the log), not
a server error; a caller's X-Request-ID reaches the audit only if it is plain ASCII."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.requests import ClientDisconnect

from service.api.middleware import RequestContext, _request_id
from tests.service_fixtures import Service


def _scope(rid: str | None = None) -> dict[str, Any]:
    headers = [(b"x-request-id", rid.encode())] if rid is not None else []
    return {"type": "http", "method": "POST", "path": "/v1/x", "query_string": b"",
            "headers": headers, "client": ("127.0.0.1", 1)}  # fmt: skip


def test_a_client_disconnect_is_logged_as_499_not_a_server_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        assert message["type"] == "http.disconnect"
        raise ClientDisconnect()

    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    with caplog.at_level(logging.INFO):
        asyncio.run(RequestContext(app)(_scope(), receive, send))  # does not raise
    assert not sent  # nobody to answer
    statuses = [getattr(r, "fields", {}).get("status") for r in caplog.records]
    assert 499 in statuses and 500 not in statuses


def test_an_error_without_a_disconnect_still_propagates() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("bug")

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        pass

    with pytest.raises(RuntimeError):
        asyncio.run(RequestContext(app)(_scope(), receive, send))


@given(st.text(max_size=80))
def test_request_ids_are_plain_ascii_or_replaced(rid: str) -> None:
    try:
        rid.encode("latin-1")
    except UnicodeEncodeError:
        return  # not sendable as a header at all
    got = _request_id(_scope(rid))  # type: ignore[arg-type]
    assert 1 <= len(got) <= 64 and got.isascii()
    assert all(c.isalnum() or c in "._-" for c in got)
    if got != rid:
        assert len(got) == 32 and int(got, 16) >= 0  # a fresh one


def test_a_non_ascii_request_id_never_reaches_the_audit(project_service: Service) -> None:
    from sqlalchemy import select

    from service.db.models import AuditEvent

    s = project_service
    # str.isalnum() took "été" (latin-1 header bytes) for a plain id
    for rid in ("été123".encode("latin-1"), b"ok-123.4_5"):
        r = s.http.get("/v1/audit", headers={**s.as_(s.admin), "X-Request-ID": rid})
        assert r.status_code == 403  # an admin may not read the audit: an audited refusal
    with s.http.app.state.pprl.db.snapshot() as session:  # type: ignore[attr-defined]
        ids = [i for i in session.execute(select(AuditEvent.request_id)).scalars() if i]
    assert all(i.isascii() for i in ids) and "ok-123.4_5" in ids
