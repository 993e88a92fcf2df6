"""20 partners uploading at once while runs execute and a DPO reads the audit, against a
real server (TLS, uvicorn, embedded worker): every request succeeds or fails cleanly,
the audit chain verifies, and its sequence has no gaps or duplicates."""

from __future__ import annotations

import io
import ssl
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from linkage.encode import encode_table
from linkage.manifest import MANIFEST_KEY, Manifest, key_check_value
from linkage.spec import fingerprint, load_spec
from linkage.synthetic import generate_partners
from service.db.models import AuditEvent
from service.tlscert import make_local_tls
from tests.conftest import EXAMPLE_SPEC
from tests.live_server import free_port, service_env, start_server
from tests.service_fixtures import Service

KEY = bytes(range(32))
PARTNERS = 20


def _extracts() -> list[bytes]:
    spec = load_spec(EXAMPLE_SPEC)
    out = []
    for table in generate_partners(3000, seed=21).values():
        step = -(-table.num_rows // 5)
        for start in range(0, table.num_rows, step):
            part = encode_table(spec, KEY, table.drop(["person_id"]).slice(start, step)).table
            manifest = Manifest(
                fingerprint(spec), key_check_value(KEY), part.num_rows, 0, "test", "now"
            )
            buf = io.BytesIO()
            pq.write_table(part.replace_schema_metadata({MANIFEST_KEY: manifest.to_json()}), buf)
            out.append(buf.getvalue())
    return out[:PARTNERS]


def _serve(
    s: Service, tmp_path: Path, **env: str
) -> tuple[subprocess.Popen[bytes], str, ssl.SSLContext, Path]:
    """`pprl serve` over TLS on the test's database: the process, URL, TLS context, log."""
    tls = make_local_tls(tmp_path / "tls")
    port = free_port()
    log = tmp_path / "server.log"
    server = start_server(service_env(s.settings, **env), tls, port, log=log)
    return (
        server,
        f"https://127.0.0.1:{port}",
        ssl.create_default_context(cafile=str(tls.ca_cert)),
        log,
    )


@pytest.mark.slow
def test_twenty_partners_runs_and_a_dpo_at_once(service: Service, tmp_path: Path) -> None:
    s = service
    partners = [f"partner-{i:02d}" for i in range(PARTNERS)]
    for name in partners:
        s.token(name, "partner")
    s.token("analyst", "analyst")
    s.token("dpo", "dpo")
    s.project_id = s.project(members=[*partners, "analyst"])
    from tests.sealed import sealed_upload

    project = s.http.get(f"/v1/projects/{s.project_id}", headers=s.as_(s.admin)).json()
    key = s.http.app.state.pprl.enclave_public_key  # type: ignore[attr-defined]
    sealed = [sealed_upload(data, project, key) for data in _extracts()]
    server, url, context, _log = _serve(
        s, tmp_path, PPRL_WORKER_EMBEDDED="true", PPRL_WORKER_POLL_SECONDS="0.2"
    )
    try:
        statuses: list[int] = []
        errors: list[str] = []
        stop = threading.Event()

        def upload(i: int) -> None:
            try:
                with httpx.Client(verify=context, timeout=120) as c:
                    r = c.post(
                        f"{url}/v1/projects/{s.project_id}/submissions",
                        content=sealed[i][1],
                        headers={
                            **sealed[i][0],
                            "Authorization": f"Bearer {s.tokens[partners[i]]}",
                        },
                    )
                    statuses.append(r.status_code)
                    if r.status_code >= 500:
                        errors.append(r.text)
            except Exception as exc:  # a transport failure is a failure here
                errors.append(repr(exc))

        def dpo_reader() -> None:
            with httpx.Client(verify=context, timeout=60) as c:
                while not stop.is_set():
                    r = c.get(
                        f"{url}/v1/audit",
                        params={"limit": 50},
                        headers={"Authorization": f"Bearer {s.tokens['dpo']}"},
                    )
                    if r.status_code != 200:
                        errors.append(f"audit read {r.status_code}")
                    time.sleep(0.05)

        analyst = {"Authorization": f"Bearer {s.tokens['analyst']}"}
        threads = [threading.Thread(target=upload, args=(i,)) for i in range(PARTNERS)]
        reader = threading.Thread(target=dpo_reader)
        reader.start()
        with httpx.Client(verify=context, timeout=60) as c:
            runs = [c.post(f"{url}/v1/projects/{s.project_id}/runs", headers=analyst).json()["id"]]
            for t in threads:
                t.start()
            runs.append(
                c.post(f"{url}/v1/projects/{s.project_id}/runs", headers=analyst).json()["id"]
            )
            for t in threads:
                t.join()
            runs.append(
                c.post(f"{url}/v1/projects/{s.project_id}/runs", headers=analyst).json()["id"]
            )
            deadline = time.monotonic() + 300
            final = {}
            while time.monotonic() < deadline:
                final = {
                    r: c.get(f"{url}/v1/projects/{s.project_id}/runs/{r}", headers=analyst).json()[
                        "status"
                    ]
                    for r in runs
                }
                if all(v in ("done", "failed") for v in final.values()):
                    break
                time.sleep(0.5)
            verify = c.get(
                f"{url}/v1/audit/verify", headers={"Authorization": f"Bearer {s.tokens['dpo']}"}
            ).json()
        stop.set()
        reader.join()
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert not errors, errors[:3]
    assert sorted(statuses) == [202] * PARTNERS
    assert final[runs[-1]] == "done", final  # the run after all uploads links all 20
    assert all(v in ("done", "failed") for v in final.values())
    assert verify["ok"], verify["summary"]
    with s.http.app.state.pprl.db.transaction() as session:  # type: ignore[attr-defined]
        seqs = list(session.execute(select(AuditEvent.seq).order_by(AuditEvent.seq)).scalars())
    assert seqs == list(range(1, len(seqs) + 1))


READERS = 60  # more than the server's 40 worker threads: the case that once deadlocked


def test_more_readers_than_server_threads_all_get_answers(
    project_service: Service, tmp_path: Path
) -> None:
    """60 clients at once on results-style and audit reads, plus refused callers.

    More concurrent requests than the threadpool has threads used to wedge the server:
    every thread waited on the database while the request holding it needed one more
    thread to finish (SQLite: 30 s of "database is locked", then 500s).
    """
    s = project_service
    server, url, context, log = _serve(s, tmp_path, PPRL_WORKER_EMBEDDED="false")
    asks = [
        (f"/v1/projects/{s.project_id}/runs", s.tokens["analyst"], 200),
        ("/v1/audit?limit=100", s.tokens["dpo"], 200),
        (f"/v1/projects/{s.project_id}/submissions", s.tokens["housing"], 200),
        ("/v1/audit", s.tokens["housing"], 403),  # each refusal writes an audit event
        ("/healthz", "", 200),
    ]
    results: list[tuple[int | str, int, float]] = []
    barrier = threading.Barrier(READERS)

    def reader(i: int) -> None:
        with httpx.Client(base_url=url, verify=context, timeout=120) as c:
            barrier.wait()
            for k in range(5):
                path, token, expected = asks[(i + k) % len(asks)]
                started = time.perf_counter()
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                try:
                    status: int | str = c.get(path, headers=headers).status_code
                except httpx.HTTPError as exc:
                    status = repr(exc)
                results.append((status, expected, time.perf_counter() - started))

    try:
        threads = [threading.Thread(target=reader, args=(i,)) for i in range(READERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        server.terminate()
        server.wait(timeout=30)
    wrong = [(got, want) for got, want, _ in results if got != want]
    assert not wrong, f"{len(wrong)} of {len(results)} wrong: {wrong[:5]}"
    slowest = max(seconds for *_, seconds in results)
    assert slowest < 20, f"a request took {slowest:.1f} s: the server stalled"
    assert "database is locked" not in log.read_text(errors="replace")
    verify = s.http.get("/v1/audit/verify", headers=s.as_(s.tokens["dpo"])).json()
    assert verify["ok"], verify["summary"]
