"""Sealed submission throughput: seal on the partner's side, upload, validate in the enclave.

    .venv/bin/python benchmarks/bench_upload.py [--records 1000000]

Starts `pprl serve` (TLS on loopback, a fresh data dir and SQLite, no embedded worker)
and a separate `pprl worker` (the enclave), hashes generated records with `pprl hash`'s
library, then times `pprl submit --trust --wait` end to end: the client drops row_ref
and seals the extract to the enclave key, streams it to the API (which checks the
envelope and stores the sealed bytes without opening them), and waits for the worker's
validator child to accept it. Prints MB/s (of the hashed extract) and the peak RSS of
the client, the API and the worker (each with its children, sampled every 20 ms), for a
quarter of the records and for all of them, to show the API's memory is flat in size.
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


_CLIENT = """
import json, sys, time
from pathlib import Path
from service.cli.submit import submit_extract, wait_for_verdict
from service.client import Client
from service.settings import ClientSettings
project, extract = sys.argv[1], Path(sys.argv[2])
with Client(ClientSettings()) as client:
    client.request("GET", "/healthz")
    sys.stdin.readline()
    start = time.perf_counter()
    done = submit_extract(client, project, extract, trust=True,
                          config_dir=ClientSettings().config_dir)
    sealed_and_sent = time.perf_counter() - start
    receipt = wait_for_verdict(client, done.receipt, timeout=3600, poll=0.05)
    seconds = time.perf_counter() - start
print(json.dumps({"receipt": receipt, "seconds": seconds, "sent": sealed_and_sent}))
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Peak:
    """Peak RSS of a process and its children, sampled in a thread."""

    def __init__(self, pid: int) -> None:
        self.proc, self.peak = psutil.Process(pid), 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                procs = [self.proc, *self.proc.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs))
            except psutil.Error:
                pass
            time.sleep(0.02)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak / 2**20


def run(extract: Path, work: Path) -> dict[str, float]:
    tls = make_local_tls(work / "tls")
    port = _port()
    env = {**os.environ, "PPRL_DATA_DIR": str(work / "data"), "PPRL_WORKER_EMBEDDED": "false",
           "PPRL_WORKER_POLL_SECONDS": "0.05"}  # fmt: skip
    env.pop("PPRL_DATABASE_URL", None)
    pprl = [sys.executable, "-m", "service.cli"]
    init = json.loads(subprocess.run([*pprl, "admin", "init", "--json"], env=env, check=True,
                                     capture_output=True, text=True).stdout)  # fmt: skip
    admin_env = {**env, "PPRL_TOKEN": init["token"]}
    partner = json.loads(subprocess.run([*pprl, "admin", "token", "create", "--role", "partner",
                                         "--name", "p", "--json"], env=admin_env, check=True,
                                        capture_output=True, text=True).stdout)  # fmt: skip
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    server = subprocess.Popen([*pprl, "serve", "--port", str(port), "--tls-cert", str(tls.server_cert),
                               "--tls-key", str(tls.server_key)], env=env, **quiet)  # type: ignore[call-overload]  # fmt: skip
    worker = subprocess.Popen([*pprl, "worker"], env=env, **quiet)  # type: ignore[call-overload]
    url = f"https://127.0.0.1:{port}"
    try:
        admin = Client(
            ClientSettings(url=url, token=init["token"], ca_bundle=tls.ca_cert, retries=20)
        )
        spec = json.loads((ROOT / "examples" / "spec-uk.json").read_text())
        admin.request(
            "POST", "/v1/projects", json={"name": "bench", "spec": spec, "members": ["p"]}
        )
        api, enclave = _Peak(server.pid), _Peak(worker.pid)
        client_env = {**env, "PPRL_URL": url, "PPRL_TOKEN": partner["token"],
                      "PPRL_CA_BUNDLE": str(tls.ca_cert), "PPRL_CONFIG_DIR": str(work / "cfg")}  # fmt: skip
        # the partner's process: imports first (not timed), then seal + upload + verdict
        client = subprocess.Popen([sys.executable, "-c", _CLIENT, "bench", str(extract)],
                                  env=client_env, stdout=subprocess.PIPE, stdin=subprocess.PIPE)  # fmt: skip
        partner_peak = _Peak(client.pid)
        stdout, _ = client.communicate(b"go\n")
        client_mb, api_mb, worker_mb = partner_peak.stop(), api.stop(), enclave.stop()
        timing = json.loads(stdout)
        receipt, seconds = timing["receipt"], timing["seconds"]
        if receipt["status"] != "accepted":
            raise RuntimeError(f"the extract was not accepted: {receipt.get('reason')}")
        size = extract.stat().st_size
        return {"rows": receipt["rows"], "mb": size / 1e6, "sealed_mb": receipt["bytes"] / 1e6,
                "seconds": seconds, "mb_per_s": size / 1e6 / seconds,
                "sealed_and_uploaded_s": timing["sent"],
                "client_peak_mb": client_mb, "api_peak_mb": api_mb, "worker_peak_mb": worker_mb}  # fmt: skip
    finally:
        for proc in (server, worker):
            proc.terminate()
            proc.wait()


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
            print(f"{result['rows']:>9,} rows  {result['mb']:7.1f} MB  {result['seconds']:6.2f} s "
                  f"(sealed and uploaded in {result['sealed_and_uploaded_s']:.2f} s)  "
                  f"{result['mb_per_s']:6.1f} MB/s end to end  peak RSS: client "
                  f"{result['client_peak_mb']:.0f} MB, API {result['api_peak_mb']:.0f} MB, "
                  f"worker {result['worker_peak_mb']:.0f} MB")  # fmt: skip
        print(json.dumps(report))


if __name__ == "__main__":
    main()
