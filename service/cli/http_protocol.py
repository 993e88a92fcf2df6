"""The HTTP/1.1 protocol `pprl serve` runs: uvicorn's httptools protocol (llhttp, a C
parser) with two guards uvicorn does not have for it.

- **A header-read timeout.** uvicorn arms no timer before a request's headers are
  complete, so a connection that opens and trickles (or never sends) its request line
  and headers stayed open for ever. Here a request must finish its headers within
  ``header_timeout`` seconds of its first byte (or of the connection opening); the
  timer is not extended by each trickled byte.
- **A cap on the request line and headers** (``max_header_bytes``): beyond it, 431 and
  the connection is closed, instead of buffering whatever a caller sends.

Why httptools rather than h11 (which had both guards through its own options): h11
parses in Python; under 50 clients its parsing and event objects were a fifth of the
server's CPU per request (benchmarks/bench_load.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["MAX_HEADER_BYTES", "guarded_protocol"]

MAX_HEADER_BYTES = 64 * 1024  # request line + headers

_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: 33\r\nconnection: close\r\n\r\n"
    b"request line and headers too long"
)


def guarded_protocol(header_timeout: float, max_header_bytes: int) -> type[Any]:
    """uvicorn's httptools protocol with a header-read timeout and a header-size cap."""

    class GuardedProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None
        _header_bytes = 0  # the request line and headers the parser handed over
        _raw_bytes = 0  # bytes received after a request began, before its headers ended
        _in_headers = False
        _too_large = False

        # -- the timer: armed when a connection opens or a request starts, disarmed
        # -- when the request's headers are complete
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def _arm(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(header_timeout, self._expired)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _expired(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing() and (self._in_headers or self.cycle is None):
                # abort, not close: a TLS close waits for the peer, which is the problem
                self.transport.abort()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        # -- parser callbacks
        def on_message_begin(self) -> None:
            self._in_headers = True
            self._header_bytes = self._raw_bytes = 0
            self._arm()  # not re-armed (extended) if the connection's timer still runs
            super().on_message_begin()

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4)
            super().on_header(name, value)

        def _count(self, size: int) -> None:
            self._header_bytes += size
            if self._header_bytes > max_header_bytes:
                self._too_large = True

        def on_headers_complete(self) -> None:
            self._in_headers = False
            self._disarm()
            if self._too_large:
                return  # refused in data_received; no request starts
            super().on_headers_complete()

        def on_body(self, body: bytes) -> None:
            if not self._too_large:
                super().on_body(body)

        def on_message_complete(self) -> None:
            if not self._too_large:
                super().on_message_complete()

        def data_received(self, data: bytes) -> None:
            if self._too_large:
                return  # refused already; the rest is discarded while the close completes
            if self._in_headers:
                # the parser hands over a header only once it is whole, so a header
                # trickled without end is counted here, by the bytes that carry it
                # (twice the cap: a last chunk may hold the start of the body too)
                self._raw_bytes += len(data)
                if self._raw_bytes > 2 * max_header_bytes:
                    self._too_large = True
            if not self._too_large:
                super().data_received(data)
            if self._too_large and not self.transport.is_closing():
                self.transport.write(_TOO_LARGE)
                self.transport.close()

    return GuardedProtocol


def __getattr__(name: str) -> Any:
    """``GuardedProtocol``, configured from the settings: what each process of `pprl serve
    --processes N` imports by name (uvicorn starts them fresh, so a class made inside a
    function of the parent cannot be handed over)."""
    if name == "GuardedProtocol":
        from service.settings import Settings

        return guarded_protocol(Settings().header_timeout_seconds, MAX_HEADER_BYTES)
    raise AttributeError(name)
