"""Submission throughput: a hashed extract uploaded, validated and sealed, end to end.

    .venv/bin/python benchmarks/bench_upload.py [--records 1000000]

Starts `pprl serve` with TLS on loopback (a fresh data dir and SQLite), hashes generated
records with `pprl hash`'s library, uploads with the `pprl submit` client, and prints
MB/s and the server's peak RSS (sampled every 50 ms), for a quarter of the records and for
all of them, to show memory stays flat in file size.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq

from linkage.encode import Encoder
from linkage.manifest import MANIFEST_KEY, Manifest, key_check_value
from linkage.spec import fingerprint, load_spec
from linkage.synthetic import generate_partners
from service.client import Client
from service.settings import ClientSettings
from service.tlscert import make_local_tls

ROOT = Path(__file__).resolve().parent.parent
KEY = bytes(range(32))


def make_extract(path: Path, records: int) -> None:
    spec = load_spec(ROOT / "examples" / "spec-uk.json")
    encoder = Encoder(spec, KEY)
    written, seed = 0, 1
    with pq.ParquetWriter(path, encoder.schema, compression="zstd") as writer:
        while written < records:
            for table in generate_partners(250_000, seed=seed).values():
                part = encoder.encode(table.slice(0, records - written), row_offset=written).table
                writer.write_table(part)
                written += part.num_rows
                if written >= records:
                    break
            seed += 1
        manifest = Manifest(fingerprint(spec), key_check_value(KEY), written, 0, "bench", "now")
        writer.add_key_value_metadata({MANIFEST_KEY: manifest.to_json()})


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(extract: Path, work: Path) -> dict[str, float]:
    tls = make_local_tls(work / "tls")
    port = _port()
    env = {**os.environ, "PPRL_DATA_DIR": str(work / "data"), "PPRL_WORKER_EMBEDDED": "false"}
    env.pop("PPRL_DATABASE_URL", None)
    pprl = [sys.executable, "-m", "service.cli"]
    init = json.loads(subprocess.run([*pprl, "admin", "init", "--json"], env=env, check=True,
                                     capture_output=True, text=True).stdout)  # fmt: skip
    admin_env = {**env, "PPRL_TOKEN": init["token"]}
    partner = json.loads(subprocess.run([*pprl, "admin", "token", "create", "--role", "partner",
                                         "--name", "p", "--json"], env=admin_env, check=True,
                                        capture_output=True, text=True).stdout)  # fmt: skip
    server = subprocess.Popen([*pprl, "serve", "--port", str(port), "--tls-cert", str(tls.server_cert),
                               "--tls-key", str(tls.server_key)], env=env)  # fmt: skip
    url = f"https://127.0.0.1:{port}"
    try:
        admin = Client(
            ClientSettings(url=url, token=init["token"], ca_bundle=tls.ca_cert, retries=20)
        )
        spec = json.loads((ROOT / "examples" / "spec-uk.json").read_text())
        admin.request(
            "POST", "/v1/projects", json={"name": "bench", "spec": spec, "members": ["p"]}
        )
        proc = psutil.Process(server.pid)
        peak = [proc.memory_info().rss]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], proc.memory_info().rss)
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        client = Client(ClientSettings(url=url, token=partner["token"], ca_bundle=tls.ca_cert))
        start = time.perf_counter()
        receipt = client.upload("/v1/projects/bench/submissions", extract)
        seconds = time.perf_counter() - start
        stop.set()
        sampler.join()
        size = extract.stat().st_size
        return {"rows": receipt["rows"], "mb": size / 1e6, "seconds": seconds,
                "mb_per_s": size / 1e6 / seconds, "server_peak_mb": peak[0] / 2**20}  # fmt: skip
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        report = {}
        for label, n in (("quarter", args.records // 4), ("full", args.records)):
            extract = work / f"{label}.parquet"
            make_extract(extract, n)
            result = run(extract, work / label)
            report[label] = result
            print(f"{result['rows']:>9,} rows  {result['mb']:7.1f} MB  {result['seconds']:6.2f} s  "
                  f"{result['mb_per_s']:6.1f} MB/s  server peak RSS {result['server_peak_mb']:.0f} MB")  # fmt: skip
        print(json.dumps(report))


if __name__ == "__main__":
    main()
