"""20 partners uploading at once while runs execute and a DPO reads the audit, against a
real server (TLS, uvicorn, embedded worker): every request succeeds or fails cleanly,
the audit chain verifies, and its sequence has no gaps or duplicates."""

from __future__ import annotations

import io
import os
import socket
import ssl
import subprocess
import sys
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


@pytest.mark.slow
def test_twenty_partners_runs_and_a_dpo_at_once(service: Service, tmp_path: Path) -> None:
    s = service
    partners = [f"partner-{i:02d}" for i in range(PARTNERS)]
    for name in partners:
        s.token(name, "partner")
    s.token("analyst", "analyst")
    s.token("dpo", "dpo")
    s.project_id = s.project(members=[*partners, "analyst"])
    extracts = _extracts()
    tls = make_local_tls(tmp_path / "tls")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "PPRL_DATA_DIR": str(s.settings.data_dir),
        "PPRL_DATABASE_URL": s.settings.url,
        "PPRL_WORKER_POLL_SECONDS": "0.2",
        "PPRL_WORKER_EMBEDDED": "true",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "service.cli",
            "serve",
            "--port",
            str(port),
            "--tls-cert",
            str(tls.server_cert),
            "--tls-key",
            str(tls.server_key),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "server.log").open("wb"),
    )
    url = f"https://127.0.0.1:{port}"
    context = ssl.create_default_context(cafile=str(tls.ca_cert))
    try:
        for _ in range(150):
            try:
                httpx.get(f"{url}/healthz", verify=context)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        statuses: list[int] = []
        errors: list[str] = []
        stop = threading.Event()

        def upload(i: int) -> None:
            try:
                with httpx.Client(verify=context, timeout=120) as c:
                    r = c.post(
                        f"{url}/v1/projects/{s.project_id}/submissions",
                        content=extracts[i],
                        headers={"Authorization": f"Bearer {s.tokens[partners[i]]}"},
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
    assert sorted(statuses) == [201] * PARTNERS
    assert final[runs[-1]] == "done", final  # the run after all uploads links all 20
    assert all(v in ("done", "failed") for v in final.values())
    assert verify["ok"], verify["summary"]
    with s.http.app.state.pprl.db.transaction() as session:  # type: ignore[attr-defined]
        seqs = list(session.execute(select(AuditEvent.seq).order_by(AuditEvent.seq)).scalars())
    assert seqs == list(range(1, len(seqs) + 1))
