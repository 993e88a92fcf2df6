"""`pprl serve`: the API over HTTPS (and a supervised embedded enclave worker), with a
connection cap and a header-read timeout; `pprl worker`: the enclave worker alone, with
its own health check (`pprl worker --check`)."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import sys
import threading
from pathlib import Path
from typing import Any

import typer

from service.cli._app import app, err, fail, out


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
    processes: int | None = typer.Option(
        None,
        "--processes",
        min=1,
        max=64,
        help="API processes sharing the port (default PPRL_API_PROCESSES, 1); one per core.",
    ),
) -> None:
    """Serve the API (HTTPS) with an embedded enclave worker. Refuses plain HTTP off loopback."""
    import uvicorn

    from service.app import create_app
    from service.cli.http_protocol import MAX_HEADER_BYTES, guarded_protocol
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
        processes = processes or settings.api_processes
        # built here in any case, so that a bad setting or key fails before serving
        application = create_app(settings)
    except KeyFileError as exc:
        fail(str(exc))
    except ValueError as exc:
        fail(f"settings: {exc}")
    configure_logging(settings.log_level)
    import gc

    # the app's start-up objects (pandas, pyarrow, SQLAlchemy, FastAPI) live as long as
    # the process: keep them out of the collector's full passes, whose pauses under load
    # were the longest waits in benchmarks/bench_load.py
    gc.freeze()
    supervisor = None
    if settings.worker_embedded:
        from service.worker.supervise import Supervisor

        # the embedded worker is its own process (only it loads the enclave private key
        # and the audit signing key); restarted if it dies, and it dies with this server
        supervisor = Supervisor(
            [sys.executable, "-m", "service.cli", "worker", "--parent-pid", str(os.getpid())]
        )
        supervisor.start()
    scheme = "https" if tls_cert else "http"
    shown = f"[{host}]" if ":" in host else host
    pages = "pages: /analyst /dpo /partner, API reference: /docs"
    err.print(f"pprl serving on {scheme}://{shown}:{port}  ({pages})", markup=False, soft_wrap=True)
    served: dict[str, Any] = (
        {"app": application,
         "http": guarded_protocol(settings.header_timeout_seconds, MAX_HEADER_BYTES)}
        if processes == 1
        else {"app": "service.cli.api_process:make_app", "factory": True, "workers": processes,
              "http": "service.cli.http_protocol:GuardedProtocol"}
    )  # fmt: skip
    try:
        uvicorn.run(
            **served,
            host=host,
            port=port,
            ssl_certfile=str(tls_cert) if tls_cert else None,
            ssl_keyfile=str(tls_key) if tls_key else None,
            access_log=False,
            log_level="warning",
            server_header=False,
            timeout_graceful_shutdown=5,
            # beyond it: 503, not exhaustion (the cap is per process)
            limit_concurrency=max(settings.max_connections // processes, 1),
            timeout_keep_alive=max(int(settings.header_timeout_seconds), 1),
            # the client address rate-limits failed sign-ins and is audited: taken from
            # X-Forwarded-For only behind a proxy the operator names (uvicorn trusted it
            # from any loopback caller by default, so a local process could pick its own)
            proxy_headers=bool(settings.trusted_proxies),
            forwarded_allow_ips=settings.trusted_proxies or None,
        )
    finally:
        if supervisor is not None:
            supervisor.stop()


@app.command()
def worker(
    once: bool = typer.Option(False, "--once", help="Process at most one run, then exit."),
    parent_pid: int | None = typer.Option(
        None, "--parent-pid", help="Exit when this process is gone (set by `pprl serve`)."
    ),
    check: bool = typer.Option(
        False, "--check", help="Health check: exit 0 if a worker beat within the last minute."
    ),
) -> None:
    """Run the enclave worker alone (production: the only process with the private key)."""
    from service.crypto import KeyFileError
    from service.logs import configure_logging
    from service.settings import Settings
    from service.worker import supervise

    if check:
        try:
            problem = supervise.check_heartbeat(supervise.heartbeat_path(Settings().data_dir))
        except ValueError as exc:
            fail(f"settings: {exc}")
        if problem:
            fail(problem)
        out.print("worker alive")
        return
    if parent_pid is not None:
        supervise.die_with_parent(parent_pid)  # killed with its server, even mid-run
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

    def reachable() -> bool:
        from sqlalchemy import text

        with enclave.db.snapshot() as session:
            session.execute(text("SELECT 1"))
        return True

    stop = threading.Event()
    supervise.beat_forever(supervise.heartbeat_path(settings.data_dir), reachable, stop)
    with contextlib.suppress(KeyboardInterrupt):
        enclave.run_forever(stop=stop, parent_pid=parent_pid)
