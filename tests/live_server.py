"""A real `pprl serve` process over TLS on loopback, for the tests that need one.

The in-process TestClient covers most of the suite; these helpers are for tests
that kill the server, drive it with a browser or the CLI, or load it from many
threads, where only a separate process behaves like production.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx

from service.settings import Settings
from service.tlscert import LocalTls


def service_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that points a `pprl` process at ``settings``' data and database."""
    return {
        **os.environ,
        "PPRL_DATA_DIR": str(settings.data_dir),
        "PPRL_DATABASE_URL": settings.url,
        **extra,
    }


def free_port() -> int:
    """A loopback port nobody is listening on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    env: dict[str, str],
    tls: LocalTls,
    port: int,
    *extra_args: str,
    log: Path | None = None,
    timeout: float = 30.0,
) -> subprocess.Popen[bytes]:
    """Start `pprl serve` with ``env`` and wait until /healthz answers over TLS.

    stderr goes to ``log`` (or nowhere): a pipe nobody reads would fill and block
    the server. If it exits or stays silent past ``timeout`` the process is killed
    and the assertion quotes the end of its log.
    """
    stderr = log.open("wb") if log else None
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--port", str(port),
             "--tls-cert", str(tls.server_cert), "--tls-key", str(tls.server_key), *extra_args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr or subprocess.DEVNULL,
        )  # fmt: skip
    finally:
        if stderr:
            stderr.close()  # the child holds its own descriptor
    context = ssl.create_default_context(cafile=str(tls.ca_cert))
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(f"https://127.0.0.1:{port}/healthz", verify=context)
            return proc
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                tail = log.read_text(errors="replace")[-2000:] if log else ""
                raise AssertionError(f"pprl serve did not come up on port {port}\n{tail}") from None
            time.sleep(0.1)
