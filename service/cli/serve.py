"""`pprl serve`: the API over HTTPS (and an embedded enclave worker)."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import typer

from service.cli._app import app, fail


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind."),
    port: int = typer.Option(8443, "--port", help="Port to bind."),
    tls_cert: Path | None = typer.Option(None, "--tls-cert", help="Certificate chain (PEM)."),
    tls_key: Path | None = typer.Option(None, "--tls-key", help="Private key (PEM)."),
    worker: bool = typer.Option(True, "--worker/--no-worker", help="Run an enclave worker too."),
) -> None:
    """Serve the API (HTTPS) with an embedded enclave worker. Refuses plain HTTP off loopback."""
    import uvicorn

    from service.app import create_app
    from service.crypto import KeyFileError
    from service.logs import configure_logging
    from service.settings import Settings

    if (tls_cert is None) != (tls_key is None):
        fail("give both --tls-cert and --tls-key, or neither")
    if tls_cert is None and not is_loopback(host):
        fail(f"refusing to serve plain HTTP on {host}: pass --tls-cert and --tls-key")
    for path in (tls_cert, tls_key):
        if path is not None and not path.is_file():
            fail(f"{path}: file not found")
    try:
        settings = Settings()
        if not worker:
            settings.worker_embedded = False
        application = create_app(settings)
    except KeyFileError as exc:
        fail(str(exc))
    except ValueError as exc:
        fail(f"settings: {exc}")
    configure_logging(settings.log_level)
    child = None
    if settings.worker_embedded:
        # the embedded worker is its own process: only it loads the enclave private key
        child = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "worker", "--parent-pid", str(os.getpid())]
        )
    try:
        uvicorn.run(
            application,
            host=host,
            port=port,
            ssl_certfile=str(tls_cert) if tls_cert else None,
            ssl_keyfile=str(tls_key) if tls_key else None,
            access_log=False,
            log_level="warning",
            server_header=False,
            timeout_graceful_shutdown=5,
        )
    finally:
        if child is not None:
            child.terminate()
            child.wait(timeout=30)


@app.command()
def worker(
    once: bool = typer.Option(False, "--once", help="Process at most one run, then exit."),
    parent_pid: int | None = typer.Option(
        None, "--parent-pid", help="Exit when this process is gone (set by `pprl serve`)."
    ),
) -> None:
    """Run the enclave worker alone (production: the only process with the private key)."""
    from service.crypto import KeyFileError
    from service.logs import configure_logging
    from service.settings import Settings
    from service.worker.loop import Worker

    try:
        settings = Settings()
        configure_logging(settings.log_level)
        enclave = Worker(settings)
    except KeyFileError as exc:
        fail(str(exc))
    except ValueError as exc:
        fail(f"settings: {exc}")
    if once:
        enclave.run_once()
        return
    with contextlib.suppress(KeyboardInterrupt):
        enclave.run_forever(parent_pid=parent_pid)
