"""A worker that is always there, runs that stay bounded, connections that cannot pile up.

- a run over its wall-clock limit fails cleanly (safe message, audited, no release, no
  process left computing);
- `kill -9` of the embedded worker mid-run: the server restarts it, the run is taken
  over after its lease and completes exactly once, and the killed worker's computation
  died with it;
- connections that never finish their headers are closed; beyond the connection cap the
  server answers 503;
- the worker's own health check.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from sqlalchemy import func, select

from service.db.models import AuditEvent, Result
from service.tlscert import make_local_tls
from service.worker.supervise import ChildDied, run_limited
from tests.live_server import free_port, service_env, start_server
from tests.reliability.runs import queue_big_run, run_state
from tests.service_fixtures import Service


def _sleepy(_settings: object, _db: object, seconds: float, progress: object) -> str:
    time.sleep(seconds)
    return "finished"


def _crash(_settings: object, _db: object, _x: object, progress: object) -> str:
    os._exit(3)


def test_run_limited_returns_kills_and_reports(tmp_path: Path) -> None:
    from service.worker.enclave import RunFailed

    url = f"sqlite:///{tmp_path / 'x.db'}"
    seen: list[tuple[str, float]] = []
    assert run_limited(_sleepy, None, 0.1, progress=lambda *a: seen.append(a), url=url,
                       limit_seconds=30) == "finished"  # fmt: skip
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    started = time.monotonic()
    with pytest.raises(RunFailed, match="time limit of 1 s"):
        run_limited(_sleepy, None, 60, progress=lambda *a: None, url=url, limit_seconds=1)
    assert time.monotonic() - started < 10
    after = {p.pid for p in psutil.Process().children(recursive=True)}
    assert after <= before, "the timed-out computation is still running"
    with pytest.raises(ChildDied):
        run_limited(_crash, None, None, progress=lambda *a: None, url=url, limit_seconds=30)


def test_a_run_over_its_time_limit_fails_cleanly(
    project_service: Service, hashed_extracts: dict[str, Path]
) -> None:
    from service.worker.loop import Worker

    s = project_service
    for partner in ("housing", "police"):
        r = s.upload(s.tokens[partner], hashed_extracts[partner].read_bytes())
        assert r.status_code == 202, r.text
    analyst = s.as_(s.tokens["analyst"])
    run_id = s.http.post(f"/v1/projects/{s.project_id}/runs", headers=analyst, json={}).json()["id"]
    s.settings.run_time_limit_seconds = 1  # Splink alone takes longer to start
    worker = Worker(s.settings)
    # what this test process already ran (another test's Spark JVM, say) is not the run's
    before = {p.pid for p in _computing_children()}
    assert worker.run_once() == run_id
    state = s.http.get(f"/v1/projects/{s.project_id}/runs/{run_id}", headers=analyst).json()
    assert state["status"] == "failed", state
    assert state["message"] == "the run exceeded its time limit of 1 s and was stopped"
    assert ("run.failed", "failed") in s.audit_actions()
    assert (
        s.http.get(
            f"/v1/projects/{s.project_id}/runs/{run_id}/results", headers=analyst
        ).status_code
        != 200
    )
    assert not [p for p in _computing_children()
                if p.pid not in before and p.status() != psutil.STATUS_ZOMBIE]  # fmt: skip


def _computing_children() -> list[psutil.Process]:
    """Children left running, except multiprocessing's own long-lived helpers (the
    validator's fork server and the resource tracker), which hold no run."""
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            cmdline = " ".join(p.cmdline())
        except psutil.NoSuchProcess:
            continue
        if "forkserver" in cmdline or "resource_tracker" in cmdline:
            continue
        out.append(p)
    return out


@pytest.mark.slow
def test_kill_9_of_the_embedded_worker_mid_run_and_the_run_completes_once(
    project_service: Service, tmp_path: Path
) -> None:
    s = project_service
    run_id = queue_big_run(s, tmp_path)
    analyst = s.as_(s.tokens["analyst"])
    tls = make_local_tls(tmp_path / "tls")
    env = service_env(s.settings, PPRL_WORKER_EMBEDDED="true", PPRL_WORKER_POLL_SECONDS="0.2",
                      PPRL_RUN_LEASE_SECONDS="3")  # fmt: skip
    server = start_server(env, tls, free_port(), log=tmp_path / "server.log")
    try:
        deadline = time.monotonic() + 180
        while True:
            run = run_state(s, run_id)
            assert run.status in ("queued", "running"), f"the run ended ({run.status}) too soon"
            if run.status == "running" and list(s.settings.work_dir.glob("run-*")):
                break
            assert time.monotonic() < deadline, "the embedded worker never started the run"
            time.sleep(0.05)
        (worker,) = psutil.Process(server.pid).children()
        computing = worker.children(recursive=True)
        assert computing, "the run computes in a child of the worker"
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        # the killed worker's computation dies with it (parent-death signal)
        _gone, alive = psutil.wait_procs(computing, timeout=30)
        assert not alive, "the killed worker's computation lives on"
        while True:  # the supervisor restarts the worker, which takes the run over
            code = s.http.get(
                f"/v1/projects/{s.project_id}/runs/{run_id}/results", headers=analyst
            ).status_code
            status = run_state(s, run_id).status
            if code == 200:
                assert status == "done"
            if status in ("done", "failed"):
                break
            assert time.monotonic() < deadline + 240, "the run was never taken over"
            time.sleep(0.3)
        restarted = psutil.Process(server.pid).children()
        assert len(restarted) == 1 and restarted[0].pid != worker.pid
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    run = run_state(s, run_id)
    assert run.status == "done" and run.attempts == 2, (run.status, run.message)
    with s.http.app.state.pprl.db.snapshot() as session:  # type: ignore[attr-defined]
        assert session.execute(select(func.count()).select_from(Result)).scalar() == 1
        released = session.execute(
            select(func.count()).select_from(AuditEvent)
            .where(AuditEvent.action == "results.released")
        ).scalar()  # fmt: skip
    assert released == 1


def test_unfinished_headers_are_cut_off_and_connections_capped(
    project_service: Service, tmp_path: Path
) -> None:
    s = project_service
    tls = make_local_tls(tmp_path / "tls")
    port = free_port()
    env = service_env(s.settings, PPRL_WORKER_EMBEDDED="false", PPRL_HEADER_TIMEOUT_SECONDS="1",
                      PPRL_MAX_CONNECTIONS="8")  # fmt: skip
    server = start_server(env, tls, port, log=tmp_path / "server.log")
    context = ssl.create_default_context(cafile=str(tls.ca_cert))
    sockets: list[ssl.SSLSocket] = []
    try:
        for _ in range(12):
            raw = socket.create_connection(("127.0.0.1", port), timeout=10)
            tls_sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
            tls_sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # never finished
            sockets.append(tls_sock)
        # beyond the cap a complete request is refused with 503, not queued forever
        r = httpx.get(f"https://127.0.0.1:{port}/healthz", verify=context, timeout=10)
        assert r.status_code == 503
        time.sleep(2.5)
        for tls_sock in sockets:
            tls_sock.settimeout(5)
            try:
                assert tls_sock.recv(1024) == b"", "a stalled connection was left open"
            except (ConnectionResetError, ssl.SSLError):
                pass  # closed by the server
        # and once they are gone, the server answers again
        assert httpx.get(f"https://127.0.0.1:{port}/healthz", verify=context).status_code == 200
        # headers past the cap are refused, not buffered; a request within it still works
        big = httpx.get(f"https://127.0.0.1:{port}/healthz", verify=context,
                        headers={"X-Padding": "a" * 70_000})  # fmt: skip
        assert big.status_code == 431
        fine = httpx.get(f"https://127.0.0.1:{port}/healthz", verify=context,
                         headers={"X-Padding": "a" * 30_000})  # fmt: skip
        assert fine.status_code == 200
        # a header sent in pieces and never finished is cut off by its size too
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            endless = context.wrap_socket(raw, server_hostname="127.0.0.1")
            endless.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Endless: ")
            answer = b""
            with contextlib.suppress(OSError):
                for _ in range(100):
                    endless.sendall(b"a" * 4096)
                    time.sleep(0.002)
            with contextlib.suppress(OSError):
                answer = endless.recv(1024)
            assert answer.startswith(b"HTTP/1.1 431")
    finally:
        for tls_sock in sockets:
            tls_sock.close()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


def test_the_worker_has_its_own_health_check(project_service: Service, tmp_path: Path) -> None:
    s = project_service
    env = service_env(s.settings, PPRL_WORKER_POLL_SECONDS="0.2")
    check = [sys.executable, "-m", "service.cli", "worker", "--check"]
    assert subprocess.run(check, env=env, capture_output=True).returncode != 0
    worker = subprocess.Popen([sys.executable, "-m", "service.cli", "worker"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(check, env=env, capture_output=True).returncode != 0:
            assert time.monotonic() < deadline, "the worker never reported healthy"
            time.sleep(0.5)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)


@pytest.mark.slow
def test_a_server_killed_mid_run_takes_its_worker_and_computation_with_it(
    project_service: Service, tmp_path: Path
) -> None:
    s = project_service
    run_id = queue_big_run(s, tmp_path)
    tls = make_local_tls(tmp_path / "tls")
    env = service_env(s.settings, PPRL_WORKER_EMBEDDED="true", PPRL_WORKER_POLL_SECONDS="0.2")
    server = start_server(env, tls, free_port(), log=tmp_path / "server.log")
    deadline = time.monotonic() + 180
    while not (run_state(s, run_id).status == "running" and list(s.settings.work_dir.glob("run-*"))):
        assert run_state(s, run_id).status in ("queued", "running"), "the run ended too soon"
        assert time.monotonic() < deadline, "the embedded worker never started the run"
        time.sleep(0.05)
    everything = psutil.Process(server.pid).children(recursive=True)
    assert len(everything) >= 2, "a worker and its computing child"
    server.send_signal(signal.SIGKILL)
    server.wait()
    _gone, alive = psutil.wait_procs(everything, timeout=30)
    assert not alive, f"{len(alive)} process(es) kept computing after the server died"


def test_several_api_processes_serve_one_port_with_the_same_guards(
    project_service: Service, tmp_path: Path
) -> None:
    """`pprl serve --processes 2`: both processes answer on one port, the header guard is
    each one's, no process starts a second enclave worker, and SIGTERM stops them all."""
    s = project_service
    tls = make_local_tls(tmp_path / "tls")
    port = free_port()
    env = service_env(s.settings, PPRL_HEADER_TIMEOUT_SECONDS="1")
    server = start_server(env, tls, port, "--processes", "2", log=tmp_path / "server.log")
    context = ssl.create_default_context(cafile=str(tls.ca_cert))
    try:
        children = psutil.Process(server.pid).children()
        commands = [" ".join(child.cmdline()) for child in children]
        assert sum("--parent-pid" in c for c in commands) == 1, commands  # one enclave worker
        assert sum("spawn_main" in c for c in commands) == 2, commands  # two API processes
        with httpx.Client(verify=context, http2=False) as client:
            statuses = {client.get(f"https://127.0.0.1:{port}/healthz").status_code
                        for _ in range(20)}  # fmt: skip
            assert statuses == {200}
            big = client.get(f"https://127.0.0.1:{port}/healthz",
                             headers={"X-Padding": "a" * 70_000})  # fmt: skip
            assert big.status_code == 431
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    _gone, alive = psutil.wait_procs(children, timeout=15)
    assert not alive, [" ".join(p.cmdline()) for p in alive]
