"""kill -9 in the middle of things: a linkage run completes exactly once after a worker
dies, with no partial results ever visible and no scratch left behind; a server killed
mid-upload leaves no half submission."""

from __future__ import annotations

import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from service.db.models import AuditEvent, Result, Submission
from service.tlscert import make_local_tls
from tests.live_server import free_port, service_env, start_server
from tests.reliability.runs import queue_big_run, run_state
from tests.service_fixtures import Service


def _env(s: Service, **extra: str) -> dict[str, str]:
    return service_env(s.settings, PPRL_WORKER_POLL_SECONDS="0.2", **extra)


@pytest.mark.slow
def test_worker_killed_mid_run_completes_exactly_once(
    project_service: Service, tmp_path: Path
) -> None:
    s = project_service
    run_id = queue_big_run(s, tmp_path)
    analyst = s.as_(s.tokens["analyst"])
    env = _env(s, PPRL_RUN_LEASE_SECONDS="3")
    first = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while True:
        state = run_state(s, run_id)
        assert state.status in ("queued", "running"), (
            f"the run ended ({state.status}) before the worker could be killed"
        )
        if state.status == "running" and list(s.settings.work_dir.glob("run-*")):
            break  # mid-run: claimed, its private directory holding opened submissions
        assert time.monotonic() < deadline and first.poll() is None, "the worker never got going"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    state = run_state(s, run_id)
    assert state.status == "running" and state.attempts == 1
    assert (
        s.http.get(
            f"/v1/projects/{s.project_id}/runs/{run_id}/results", headers=analyst
        ).status_code
        == 409
    )
    second = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            assert time.monotonic() < deadline + 120, "the run was never taken over"
            # ask for results first, then read the state: results seen before the run was
            # done would be partial results
            code = s.http.get(
                f"/v1/projects/{s.project_id}/runs/{run_id}/results", headers=analyst
            ).status_code
            status = run_state(s, run_id).status
            if code == 200:
                assert status == "done", f"results were served while the run was {status}"
            else:
                assert code == 409, code
            if status in ("done", "failed"):
                break
            time.sleep(0.2)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
    state = run_state(s, run_id)
    assert state.status == "done" and state.attempts == 2
    with s.http.app.state.pprl.db.transaction() as session:  # type: ignore[attr-defined]
        assert session.execute(select(func.count()).select_from(Result)).scalar() == 1
        released = session.execute(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "results.released")
        ).scalar()
    assert released == 1
    assert not list(s.settings.work_dir.glob("run-*")), "the killed worker's scratch was not swept"
    assert (
        s.http.get(
            f"/v1/projects/{s.project_id}/runs/{run_id}/results", headers=analyst
        ).status_code
        == 200
    )


@pytest.fixture
def live_server(
    project_service: Service, tmp_path: Path
) -> Iterator[tuple[Service, str, ssl.SSLContext, list[subprocess.Popen[bytes]]]]:
    tls = make_local_tls(tmp_path / "tls")
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        proc = start_server(_env(project_service), tls, port, "--no-worker")
        procs.append(proc)
        return proc

    start()
    context = ssl.create_default_context(cafile=str(tls.ca_cert))
    yield project_service, f"https://127.0.0.1:{port}", context, procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_server_killed_mid_upload_leaves_no_half_submission(
    live_server: tuple[Service, str, ssl.SSLContext, list[subprocess.Popen[bytes]]],
    tmp_path: Path,
    hashed_extracts: dict[str, Path],
) -> None:
    s, url, context, procs = live_server
    from tests.sealed import sealed_upload

    project = s.http.get(f"/v1/projects/{s.project_id}", headers=s.as_(s.admin)).json()
    key = s.http.app.state.pprl.enclave_public_key  # type: ignore[attr-defined]
    sealed_headers, data = sealed_upload(hashed_extracts["housing"].read_bytes(), project, key)
    sent = threading.Event()

    def slow_body() -> Iterator[bytes]:
        yield data[: len(data) // 2]
        sent.set()
        time.sleep(30)
        yield data[len(data) // 2 :]

    def upload() -> None:
        try:
            httpx.post(
                f"{url}/v1/projects/{s.project_id}/submissions",
                content=slow_body(),
                verify=context,
                headers={
                    **sealed_headers,
                    "Authorization": f"Bearer {s.tokens['housing']}",
                    "Content-Length": str(len(data)),
                },
                timeout=60,
            )
        except httpx.HTTPError:
            pass

    thread = threading.Thread(target=upload, daemon=True)
    thread.start()
    assert sent.wait(30)
    # the envelope is checked against the database before the body is written: under load
    # that takes a moment, so wait for the partial file rather than a fixed time
    deadline = time.monotonic() + 20
    while not list(s.settings.incoming_dir.glob("*.part")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(s.settings.incoming_dir.glob("*.part")), "the upload should be in flight"
    procs[0].send_signal(signal.SIGKILL)
    procs[0].wait()
    # restart: the half upload is swept and nothing is visible
    from service.app import create_app

    create_app(s.settings).state.pprl.db.dispose()
    assert not list(s.settings.incoming_dir.glob("*.part"))
    assert not list(s.settings.data_dir.rglob("*.sealed"))
    with s.http.app.state.pprl.db.transaction() as session:  # type: ignore[attr-defined]
        assert session.execute(select(func.count()).select_from(Submission)).scalar() == 0
    assert (
        s.http.get(f"/v1/projects/{s.project_id}/submissions", headers=s.as_(s.admin)).json() == []
    )


def test_embedded_worker_does_not_outlive_a_killed_server(
    project_service: Service, tmp_path: Path
) -> None:
    import psutil

    s = project_service
    tls = make_local_tls(tmp_path / "tls")
    server = start_server(
        _env(s, PPRL_WORKER_EMBEDDED="true"), tls, free_port(), log=tmp_path / "server.log"
    )
    deadline = time.monotonic() + 60
    while not psutil.Process(server.pid).children():
        assert time.monotonic() < deadline, "no embedded worker started"
        time.sleep(0.1)
    (worker,) = psutil.Process(server.pid).children()
    time.sleep(2)  # let the worker reach its polling loop
    server.send_signal(signal.SIGKILL)
    server.wait()
    worker.wait(timeout=30)  # raises psutil.TimeoutExpired if the orphan lives on
