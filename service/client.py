"""The HTTP client behind the client commands (`pprl submit`, `pprl run`, ...).

Verifies the server certificate against ``PPRL_CA_BUNDLE`` (or the system store),
retries connection failures with backoff, and turns error responses into one sentence.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx

from service.settings import ClientSettings

__all__ = ["Client", "ClientError"]


class ClientError(Exception):
    """A request failed; the message is the server's one-sentence explanation."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Client:
    """A thin, typed wrapper over ``httpx.Client`` for the pprl API."""

    def __init__(self, settings: ClientSettings | None = None, timeout: float = 60.0) -> None:
        self.settings = settings or ClientSettings()
        token = self.settings.token.get_secret_value() if self.settings.token else None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        verify: Any = True
        if self.settings.ca_bundle is not None:
            if not Path(self.settings.ca_bundle).is_file():
                raise ClientError(f"PPRL_CA_BUNDLE: {self.settings.ca_bundle} not found")
            verify = ssl.create_default_context(cafile=str(self.settings.ca_bundle))
        self._http = httpx.Client(
            base_url=self.settings.url.rstrip("/"),
            headers=headers,
            verify=verify,
            timeout=httpx.Timeout(timeout, connect=10.0),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request (retrying connection failures) and return the decoded JSON."""
        response = self._with_retries(lambda: self._http.request(method, path, **kwargs))
        return self._decode(response)

    def text(self, method: str, path: str, **kwargs: Any) -> str:
        """Send a request and return the body as text (for exports)."""
        response = self._with_retries(lambda: self._http.request(method, path, **kwargs))
        if not response.is_success:
            self._decode(response)
        return response.text

    def upload(
        self,
        path: str,
        body: Callable[[], Iterable[bytes]],
        size: int,
        on_progress: Callable[[int], None] | None = None,
        headers: dict[str, str] | None = None,
        content_type: str = "application/vnd.pprl.sealed",
    ) -> Any:
        """Stream the pieces ``body()`` makes, ``size`` bytes in all, as the raw request
        body (with extra ``headers``, e.g. the sealed upload's envelope), reporting bytes
        sent. ``body`` is called again on a retry."""

        def counted() -> Iterator[bytes]:
            sent = 0
            for chunk in body():
                sent += len(chunk)
                if on_progress:
                    on_progress(sent)
                yield chunk

        sent_headers = {**(headers or {}), "Content-Type": content_type,
                        "Content-Length": str(size)}  # fmt: skip
        response = self._with_retries(
            lambda: self._http.post(path, content=counted(), headers=sent_headers, timeout=None)
        )
        return self._decode(response)

    def _with_retries(self, send: Callable[[], httpx.Response]) -> httpx.Response:
        attempts = max(self.settings.retries, 0) + 1
        for attempt in range(attempts):
            try:
                return send()
            except httpx.ConnectError as exc:
                if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                    raise ClientError(
                        f"{self.settings.url}: the server certificate is not trusted "
                        "(set PPRL_CA_BUNDLE to the service's CA certificate)"
                    ) from None
                if attempt + 1 == attempts:
                    raise ClientError(
                        f"{self.settings.url}: cannot connect after {attempts} attempts "
                        "(is the service running? check PPRL_URL)"
                    ) from None
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
                if attempt + 1 == attempts:
                    raise ClientError(
                        f"{self.settings.url}: the connection broke {attempts} times"
                    ) from None
            time.sleep(min(0.5 * 2**attempt, 8))
        raise AssertionError("unreachable")

    @staticmethod
    def _decode(response: httpx.Response) -> Any:
        if response.is_success:
            return response.json()
        try:
            body = response.json()
            message = str(body.get("detail") or body.get("error"))
        except ValueError:
            message = response.reason_phrase
        raise ClientError(f"{message} (HTTP {response.status_code})", response.status_code)
