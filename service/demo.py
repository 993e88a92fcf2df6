"""The whole flow on synthetic partners, end to end: what `make demo` shows.

An embedded service (SQLite + DuckDB, data under the demo directory) served over HTTPS
with a throwaway certificate; four partners with overlapping, messy synthetic extracts;
each hashes with `pprl hash` and submits with `pprl submit`; an analyst runs the linkage
and reads the released figures, shown beside the true (pre-disclosure) figures that only
a demo can know; the UpSet chart; the audit chain verified; the DPO's page and token.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from linkage.match import PARTNER, PERSON
from linkage.spec import load_spec
from linkage.stats import compute_figures
from linkage.synthetic import generate_partners
from service.bootstrap import initialise
from service.client import Client
from service.settings import ClientSettings, Settings
from service.tlscert import make_local_tls

__all__ = ["DemoResult", "run_demo"]

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "examples" / "spec-uk.json"
Say = Callable[[str], None]


@dataclass
class DemoResult:
    """What the demo produced, for the caller (and the test) to check."""

    released: dict[str, Any]
    truth: dict[str, int]
    url: str
    dpo_token: str
    admin_token: str
    chart: Path
    audit_ok: bool
    audit_summary: str
    seconds: float
    server: subprocess.Popen[bytes] | None = None
    tokens: dict[str, str] = field(default_factory=dict)


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeError("no free port")


def _pprl(env: dict[str, str], *args: str | Path) -> str:
    result = subprocess.run([sys.executable, "-m", "service.cli", *map(str, args)], env=env,
                            capture_output=True, text=True, check=False)  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"pprl {args[0]} failed: {result.stderr.strip().splitlines()[-1]}")
    return result.stdout


def _wait_healthy(client: Client, server: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.request("GET", "/healthz")
            return
        except Exception:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the demo server did not start (see its log above)") from None
            time.sleep(0.3)


def _truth(
    partner_tables: dict[str, pa.Table], hashed: dict[str, Path], threshold: int
) -> dict[str, int]:
    """The exact figures from the generator's ground truth (a demo-only privilege)."""
    spec = load_spec(SPEC)
    parts = []
    for name, path in hashed.items():
        table = pq.read_table(path)
        # the partner's local row map (never uploaded): input row of each hashed row
        row_map = path.with_name(path.name.replace(".hashed.parquet", ".rows.parquet"))
        rows = pq.read_table(row_map).column("row_ref").to_numpy() - 1
        person = partner_tables[name].column("person_id").to_numpy()[rows]
        attrs = table.select([c for c in table.column_names if c.startswith("a_")])
        attrs = attrs.append_column(PARTNER, pa.array([name] * table.num_rows))
        parts.append(attrs.append_column(PERSON, pa.array(person.astype(np.int64))))
    return compute_figures(pa.concat_tables(parts), spec, threshold).counts


def run_demo(directory: Path, *, people: int = 20_000, port: int = 8443, say: Say = print,
             keep_serving: bool = True, database_url: str | None = None) -> DemoResult:  # fmt: skip
    """Run the whole flow; leaves the server running (returned) when ``keep_serving``.

    ``database_url``: an empty PostgreSQL database to use instead of the embedded SQLite
    (benchmarks measure the production configuration with it)."""
    started = time.perf_counter()
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True, mode=0o700)
    data = directory / "data"
    env = {**os.environ, "PPRL_DATA_DIR": str(data), "PPRL_ENVIRONMENT": "development"}
    for name in ("PPRL_DATABASE_URL", "PPRL_TOKEN", "PPRL_URL", "PPRL_CA_BUNDLE"):
        env.pop(name, None)
    if database_url:
        env["PPRL_DATABASE_URL"] = database_url

    engine = "PostgreSQL" if database_url else "SQLite"
    say(f"1. operator: initialise the service ({engine} + DuckDB, keys, first admin token)")
    init = initialise(Settings(data_dir=data, database_url=database_url))
    tls = make_local_tls(directory / "tls")
    port = _free_port(port)
    url = f"https://127.0.0.1:{port}"
    env.update({"PPRL_URL": url, "PPRL_CA_BUNDLE": str(tls.ca_cert)})
    server = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--port", str(port),
         "--tls-cert", str(tls.server_cert), "--tls-key", str(tls.server_key)],
        env=env, stdout=subprocess.DEVNULL, stderr=open(directory / "server.log", "wb"),  # noqa: SIM115
    )  # fmt: skip
    try:
        admin = Client(
            ClientSettings(url=url, token=init.admin_token, ca_bundle=tls.ca_cert, retries=0)
        )
        _wait_healthy(admin, server)
        say(f"   serving {url} over TLS (certificate from a throwaway local CA)")

        tables = generate_partners(people, seed=2026)
        partners = sorted(tables)
        tokens: dict[str, str] = {}
        for name, role in [
            *((p, "partner") for p in partners),
            ("analyst", "analyst"),
            ("dpo", "dpo"),
        ]:
            tokens[name] = admin.request("POST", "/v1/tokens", json={"name": name, "role": role})[
                "token"
            ]
        spec_json = json.loads(SPEC.read_text())
        project = admin.request("POST", "/v1/projects", json={
            "name": "frequent-users", "spec": spec_json, "members": [*partners, "analyst"],
            "purpose": "Find how many frequent service users are shared between local services",
            "legal_basis": "UK GDPR Art 6(1)(e) public task; Art 9(2)(h) health and social care",
            "agreement": "DSA-2026-014 (demo)", "retention_days": 90,
        })  # fmt: skip
        say(
            f"2. admin: project 'frequent-users' with partners {', '.join(partners)}, an analyst and a DPO"
        )

        extracts = directory / "partners"
        extracts.mkdir()
        secret = extracts / "project.key"
        kcv = json.loads(_pprl(env, "keygen", secret, "--json"))["key_check_value"]
        say(f"3. partners: shared project secret made out of band (key check value {kcv})")
        hashed: dict[str, Path] = {}
        for name in partners:
            csv_path = extracts / f"{name}.csv"
            pacsv.write_csv(tables[name].drop(["person_id"]), csv_path)
            hashed[name] = extracts / f"{name}.hashed.parquet"
            info = json.loads(_pprl(env, "hash", "--spec", SPEC, "--secret", secret, csv_path, hashed[name],
                                    "--rejects", extracts / f"{name}.rejects.csv",
                                    "--row-map", extracts / f"{name}.rows.parquet", "--json"))  # fmt: skip
            # each partner keeps its own pins; the fingerprint comes from the project lead
            partner_env = {**env, "PPRL_TOKEN": tokens[name],
                           "PPRL_CONFIG_DIR": str(extracts / f".{name}-config")}  # fmt: skip
            receipt = json.loads(
                _pprl(partner_env, "submit", "--project", "frequent-users", hashed[name],
                      "--enclave-fingerprint", project["enclave_key_fingerprint"],
                      "--wait", "--json")  # fmt: skip
            )
            say(f"   {name:12s} pprl hash: {info['rows_written']:>6,} rows ({info['rows_rejected']} rejected)"
                f"  pprl submit: sealed, {receipt['status']} by the enclave, v{receipt['version']}")  # fmt: skip

        say(
            "4. analyst: pprl run --wait (the enclave worker links with Splink and releases aggregates)"
        )
        analyst = Client(ClientSettings(url=url, token=tokens["analyst"], ca_bundle=tls.ca_cert))
        run = analyst.request("POST", "/v1/projects/frequent-users/runs", json={})
        while run["status"] not in ("done", "failed"):
            time.sleep(0.5)
            run = analyst.request("GET", f"/v1/projects/frequent-users/runs/{run['id']}")
        if run["status"] == "failed":
            raise RuntimeError(f"the linkage run failed: {run['message']}")
        released = analyst.request("GET", f"/v1/projects/frequent-users/runs/{run['id']}/results")
        truth = _truth(tables, hashed, int(released["frequent_threshold"]))
        chart = directory / "upset.png"
        from service.results import plot_results

        plot_results(released, chart)

        dpo = Client(ClientSettings(url=url, token=tokens["dpo"], ca_bundle=tls.ca_cert))
        verify = dpo.request("GET", "/v1/audit/verify")
        for client in (admin, analyst, dpo):
            client.close()
        result = DemoResult(released, truth, url, tokens["dpo"], init.admin_token, chart,
                            bool(verify["ok"]), str(verify["summary"]), time.perf_counter() - started,
                            server if keep_serving else None, tokens)  # fmt: skip
        return result
    finally:
        if not keep_serving:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
