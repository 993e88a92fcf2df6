"""The partner's whole path through real processes: `pprl admin init`, `pprl serve` with
TLS on loopback (certificate made with `cryptography`), `pprl project create`,
`pprl hash`, `pprl submit` verifying the server against PPRL_CA_BUNDLE."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.tlscert import make_local_tls
from tests.conftest import EXAMPLE_EXTRACT, EXAMPLE_SPEC
from tests.live_server import free_port, start_server


def pprl(
    env: dict[str, str], *args: str | Path, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[tuple[dict[str, str], Path]]:
    tls = make_local_tls(tmp_path / "tls")
    port = free_port()
    env = {
        **os.environ,
        "PPRL_DATA_DIR": str(tmp_path / "data"),
        "PPRL_DATABASE_URL": database_url,
        "PPRL_URL": f"https://127.0.0.1:{port}",
        "PPRL_CA_BUNDLE": str(tls.ca_cert),
        "PPRL_WORKER_EMBEDDED": "true",
        "PPRL_WORKER_POLL_SECONDS": "0.2",
    }
    init = json.loads(pprl(env, "admin", "init", "--json").stdout)
    env["PPRL_TOKEN"] = init["token"]
    proc = start_server(env, tls, port, log=tmp_path / "server.log")
    yield env, tls.ca_cert
    proc.terminate()
    proc.wait(timeout=10)


def test_partner_flow_over_tls(server: tuple[dict[str, str], Path], tmp_path: Path) -> None:
    env, ca = server
    partner = json.loads(
        pprl(
            env, "admin", "token", "create", "--role", "partner", "--name", "housing", "--json"
        ).stdout
    )
    rules = tmp_path / "rules.json"  # the example extract has 43 rows
    rules.write_text(json.dumps({"min_extract_rows": 20}))
    project = json.loads(
        pprl(
            env,
            "project",
            "create",
            "--name",
            "fsu",
            "--spec",
            EXAMPLE_SPEC,
            "--purpose",
            "frequent users",
            "--member",
            "housing",
            "--run-rules",
            rules,
            "--json",
        ).stdout
    )
    assert project["members"] == [{"name": "housing", "role": "partner"}]
    secret = tmp_path / "project.key"
    pprl(env, "keygen", secret)
    hashed = tmp_path / "hashed.parquet"
    pprl(env, "hash", "--spec", EXAMPLE_SPEC, "--secret", secret, EXAMPLE_EXTRACT, hashed)
    partner_env = {**env, "PPRL_TOKEN": partner["token"],
                   "PPRL_CONFIG_DIR": str(tmp_path / "partner-config")}  # fmt: skip
    # the first submission needs the enclave fingerprint the partner was given
    unconfirmed = pprl(partner_env, "submit", "--project", "fsu", hashed, check=False)
    assert unconfirmed.returncode != 0 and "check the enclave key fingerprint" in unconfirmed.stderr
    fingerprint = project["enclave_key_fingerprint"]
    receipt = json.loads(pprl(partner_env, "submit", "--project", "fsu", hashed, "--wait",
                              "--enclave-fingerprint", fingerprint, "--json").stdout)  # fmt: skip
    assert receipt["version"] == 1 and receipt["rows"] > 0 and receipt["status"] == "accepted"
    # security headers on the wire
    r = httpx.get(f"{env['PPRL_URL']}/healthz", verify=ssl.create_default_context(cafile=str(ca)))
    assert r.headers["strict-transport-security"] and r.headers["cache-control"] == "no-store"
    assert r.headers["x-request-id"]
    # the same file again: one clear sentence, non-zero exit
    again = pprl(partner_env, "submit", "--project", "fsu", hashed, check=False)
    assert again.returncode != 0 and "identical to your current submission" in again.stderr
    # a client without the CA refuses the server
    untrusting = {**partner_env, "PPRL_CA_BUNDLE": ""}
    refused = pprl(untrusting, "submit", "--project", "fsu", hashed, check=False)
    assert refused.returncode != 0 and "not trusted" in refused.stderr

    # the analyst runs the linkage and reads the results; the DPO exports and verifies
    analyst = json.loads(
        pprl(
            env,
            "admin",
            "token",
            "create",
            "--role",
            "analyst",
            "--name",
            "ana",
            "--project",
            "fsu",
            "--json",
        ).stdout
    )["token"]
    dpo = json.loads(
        pprl(env, "admin", "token", "create", "--role", "dpo", "--name", "dora", "--json").stdout
    )["token"]
    analyst_env = {**env, "PPRL_TOKEN": analyst}
    state = json.loads(pprl(analyst_env, "run", "--project", "fsu", "--wait", "--json").stdout)
    assert state["status"] == "done"
    table = pprl(analyst_env, "results", "--project", "fsu").stdout
    assert "distinct people" in table and "People by age band" in table
    rows = pprl(analyst_env, "results", "--project", "fsu", "--format", "csv").stdout.splitlines()
    assert rows[0] == "figure_group,breakdown,value,status,figure"
    assert any(r.endswith(",persons.total") for r in rows)
    chart = tmp_path / "chart.png"
    pprl(analyst_env, "results", "--project", "fsu", "--plot", chart, "--format", "json")
    assert chart.read_bytes()[:4] == b"\x89PNG"
    dpo_env = {**env, "PPRL_TOKEN": dpo}
    export = tmp_path / "audit.jsonl"
    pprl(dpo_env, "audit", "export", export)
    key = httpx.get(
        f"{env['PPRL_URL']}/v1/audit/public-key", verify=ssl.create_default_context(cafile=str(ca))
    ).json()
    verified = json.loads(
        pprl(
            dpo_env,
            "audit",
            "verify",
            "--file",
            export,
            "--public-key",
            key["public_key_hex"],
            "--json",
        ).stdout
    )
    assert verified["ok"] and verified["events"] > 10
    assert "verified" in pprl(dpo_env, "audit", "verify").stdout
    listed = json.loads(pprl(dpo_env, "audit", "list", "--action", "results.", "--json").stdout)
    assert {e["action"] for e in listed["events"]} >= {"results.released", "results.read"}
    # a partner cannot read the audit, an analyst cannot read another role's endpoints
    denied = pprl(partner_env, "audit", "list", check=False)
    assert denied.returncode != 0 and "403" in denied.stderr


def test_serve_refuses_plain_http_off_loopback(tmp_path: Path) -> None:
    env = {**os.environ, "PPRL_DATA_DIR": str(tmp_path)}
    result = pprl(env, "serve", "--host", "0.0.0.0", check=False)
    assert result.returncode != 0 and "refusing to serve plain HTTP" in result.stderr
