"""Sealed submission throughput: seal on the partner's side, upload, validate in the enclave.

    .venv/bin/python -m benchmarks.bench_upload [--records 1000000] [--with-row-ref]

Starts `pprl serve` (TLS on loopback, a fresh data dir and SQLite, no embedded worker)
and a separate `pprl worker` (the enclave), writes generated records as `pprl hash`
writes them (tokens and attributes; row numbers stay in the partner's local row map),
then times `pprl submit --trust --wait` end to end: the client reads the file once for
its SHA-256, then seals its bytes as written to the enclave key (behind a copy of the
Parquet footer) while it streams them to the API, the sealed digest after them (the API
checks the envelope and the digest and stores the sealed bytes without opening them),
and waits until the enclave has validated the extract and recorded `accepted`. The worker
validates while the upload arrives (``service.worker.streaming``: a validator child
follows the growing file, opening each sealed chunk and checking each row group as it
lands) and decides as soon as the API records the submission. The clock starts before
the client asks for the project and the enclave key and stops when it reads the
verdict, so sealing, upload, what the enclave has left to check after the last byte,
the decision and the client's wait for it (the service answers within 20 ms of the
verdict: ``?wait=``) are all inside it; the partner
process's imports are not. (The worker's own poll is left at its default, 1 s: it only
matters with ``PPRL_STREAM_VALIDATION=false``.) Before the timed submission, another partner submits 1,000
rows, timed and printed apart: the worker starts its validator's fork server on its
first submission (once per worker process), which the timed figure then does not pay.
``--with-row-ref`` measures an extract in the older format, with ``row_ref`` inside,
which `pprl submit` rewrites without it and seals to a file before sending.

Prints MB/s (of the hashed extract as it sits on the partner's disk), the time split
(sealed and uploaded / received to judged by the enclave), CPU-seconds (the client's as
it counts them over the timed part; the API's and the worker's, each with its children,
sampled every 20 ms) and peak RSS, for a quarter of the records and for all of them, to
show the API's memory is flat in size, and the load average before and after each run.
Each size is timed ``--repeat`` times (5), each on a fresh service after the disk has
caught up and a 1 s pause, and the median is the figure: the client, the API and the
enclave share two cores, so one run can differ from the next by a third.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

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


def make_extract(path: Path, records: int, row_ref: bool = False) -> None:
    """Write ``records`` hashed rows as `pprl hash` does (``row_ref=True``: as older
    versions did, with the row numbers inside, which `pprl submit` must strip)."""
    spec = load_spec(ROOT / "examples" / "spec-uk.json")
    encoder = Encoder(spec, KEY)
    schema = encoder.schema if row_ref else encoder.upload_schema
    written, seed = 0, 1
    with pq.ParquetWriter(path, schema, compression="zstd", write_statistics=False) as writer:
        while written < records:
            for table in generate_partners(250_000, seed=seed).values():
                part = encoder.encode(table.slice(0, records - written), row_offset=written).table
                writer.write_table(part.select(schema.names))
                written += part.num_rows
                if written >= records:
                    break
            seed += 1
        manifest = Manifest(fingerprint(spec), key_check_value(KEY), written, 0, "bench", "now")
        writer.add_key_value_metadata({MANIFEST_KEY: manifest.to_json()})


_CLIENT = """
import json, sys, time
from pathlib import Path
from typing import Any
from service.cli.submit import submit_extract, wait_for_verdict
import linkage.encode.file, service.cli.sealed_extract  # what submit imports when it runs
from service.client import Client
from service.settings import ClientSettings
project, extract = sys.argv[1], Path(sys.argv[2])
with Client(ClientSettings()) as client:
    client.request("GET", "/healthz")
    print("ready", flush=True)
    sys.stdin.readline()
    start, cpu = time.perf_counter(), time.process_time()
    done = submit_extract(client, project, extract, trust=True,
                          config_dir=ClientSettings().config_dir)
    sealed_and_sent = time.perf_counter() - start
    receipt = wait_for_verdict(client, done.receipt, timeout=3600, poll=0.05)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
print(json.dumps({"receipt": receipt, "seconds": seconds, "sent": sealed_and_sent, "cpu": cpu}))

"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Peak:
    """Peak RSS of a process and all its descendants, sampled every 20 ms in a thread, and
    the CPU-seconds they used after :meth:`mark` (descendants too, e.g. the validator
    child of the worker's fork server; a child's last 20 ms before it exits are missed)."""

    def __init__(self, pid: int) -> None:
        self.proc, self.peak = psutil.Process(pid), 0
        self._lock = threading.Lock()
        self._base: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._marked = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._once()
            time.sleep(0.02)

    def _once(self) -> None:
        rss = 0
        try:
            procs = [self.proc, *self.proc.children(recursive=True)]
        except psutil.Error:
            return
        for p in procs:
            try:
                rss += p.memory_info().rss
                t = p.cpu_times()
            except psutil.Error:
                continue
            with self._lock:
                self._last[p.pid] = float(t.user + t.system)
        self.peak = max(self.peak, rss)

    def mark(self) -> None:
        """Start counting CPU-seconds from now."""
        self._once()
        with self._lock:
            self._base, self._marked = dict(self._last), True
            self._last = {pid: v for pid, v in self._last.items() if pid in self._base}

    def stop(self) -> tuple[float, float]:
        """(peak RSS in MB, CPU-seconds since :meth:`mark`)."""
        self._once()
        self._stop.set()
        self._thread.join()
        cpu = sum(v - self._base.get(pid, 0.0) for pid, v in self._last.items())
        return self.peak / 2**20, cpu


def _judged(receipt: dict[str, Any]) -> float:
    """Seconds from the API's receipt to the enclave's recorded verdict."""
    return (datetime.fromisoformat(receipt["decided_at"])
            - datetime.fromisoformat(receipt["received_at"])).total_seconds()  # fmt: skip


def _submit(extract: Path, env: dict[str, str]) -> dict[str, Any]:
    """One partner process: imports and a health check first (not timed), then seal +
    upload + wait for the enclave's verdict (timed, CPU-seconds from then on)."""
    client = subprocess.Popen([sys.executable, "-c", _CLIENT, "bench", str(extract)], env=env,
                              stdout=subprocess.PIPE, stdin=subprocess.PIPE)  # fmt: skip
    assert client.stdin is not None and client.stdout is not None
    peak = _Peak(client.pid)
    if client.stdout.readline().strip() != b"ready":
        raise RuntimeError("the partner process did not start")
    client.stdin.write(b"go\n")
    client.stdin.close()
    stdout = client.stdout.read()
    client_mb, _ = peak.stop()
    if client.wait() != 0:
        raise RuntimeError("the partner process failed")
    timing: dict[str, Any] = json.loads(stdout)
    if timing["receipt"]["status"] != "accepted":
        raise RuntimeError(f"the extract was not accepted: {timing['receipt'].get('reason')}")
    # CPU-seconds as the partner process counts them over the timed part: sampling it from
    # outside until it exits also counted the interpreter's shut-down (0.3-0.4 s)
    return {**timing, "client_peak_mb": client_mb, "client_cpu_s": timing["cpu"]}


def run(extract: Path, work: Path) -> dict[str, Any]:
    tls = make_local_tls(work / "tls")
    port = _port()
    # the worker polls at its default (1 s): its early intake decides a streamed upload
    # without waiting for the poll, and a faster poll only costs the cores it shares
    env = {**os.environ, "PPRL_DATA_DIR": str(work / "data"), "PPRL_WORKER_EMBEDDED": "false"}
    env.pop("PPRL_DATABASE_URL", None)
    pprl = [sys.executable, "-m", "service.cli"]
    init = json.loads(subprocess.run([*pprl, "admin", "init", "--json"], env=env, check=True,
                                     capture_output=True, text=True).stdout)  # fmt: skip
    admin_env = {**env, "PPRL_TOKEN": init["token"]}
    partner, warm = (json.loads(subprocess.run([*pprl, "admin", "token", "create", "--role",
                                                "partner", "--name", name, "--json"],
                                               env=admin_env, check=True, capture_output=True,
                                               text=True).stdout) for name in ("p", "w"))  # fmt: skip
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
            "POST", "/v1/projects", json={"name": "bench", "spec": spec, "members": ["p", "w"]}
        )
        api, enclave = _Peak(server.pid), _Peak(worker.pid)  # RSS over the whole session
        client_env = {**env, "PPRL_URL": url, "PPRL_CA_BUNDLE": str(tls.ca_cert)}
        # a first, small submission from another partner: the worker starts its validator's
        # fork server on first use (once per worker process); timed and reported apart
        first = _submit(extract.with_name("warm-up.parquet"), {**client_env,
                        "PPRL_TOKEN": warm["token"], "PPRL_CONFIG_DIR": str(work / "cfg-w")})  # fmt: skip
        api.mark()
        enclave.mark()
        timing = _submit(extract, {**client_env, "PPRL_TOKEN": partner["token"],
                                   "PPRL_CONFIG_DIR": str(work / "cfg")})  # fmt: skip
        (api_mb, api_cpu), (worker_mb, worker_cpu) = api.stop(), enclave.stop()
        client_mb, client_cpu = timing["client_peak_mb"], timing["client_cpu_s"]
        receipt, seconds = timing["receipt"], timing["seconds"]
        if receipt["status"] != "accepted":
            raise RuntimeError(f"the extract was not accepted: {receipt.get('reason')}")
        size = extract.stat().st_size
        judged = _judged(receipt)
        return {"rows": receipt["rows"], "mb": size / 1e6, "sealed_mb": receipt["bytes"] / 1e6,
                "seconds": seconds, "mb_per_s": size / 1e6 / seconds,
                "sealed_and_uploaded_s": timing["sent"], "received_to_judged_s": judged,
                "client_peak_mb": client_mb, "api_peak_mb": api_mb, "worker_peak_mb": worker_mb,
                "client_cpu_s": client_cpu, "api_cpu_s": api_cpu, "worker_cpu_s": worker_cpu,
                "first_submission_s": first["seconds"],
                "first_received_to_judged_s": _judged(first["receipt"])}  # fmt: skip
    finally:
        for proc in (server, worker):
            proc.terminate()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5,
                        help="timed runs of each size (a fresh service each); the median is "
                             "the figure")  # fmt: skip
    parser.add_argument("--with-row-ref", action="store_true",
                        help="extracts in the older format, row_ref inside (submit strips it)")  # fmt: skip
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        report: dict[str, Any] = {}
        for label, n in (("quarter", args.records // 4), ("full", args.records)):
            extract = work / f"{label}.parquet"
            make_extract(extract, n, row_ref=args.with_row_ref)
            make_extract(extract.with_name("warm-up.parquet"), 1000)
            runs = []
            for i in range(args.repeat):
                _settle()
                load_before = _loadavg()
                result = run(extract, work / f"{label}-{i}")
                result["load_before"], result["load_after"] = load_before, _loadavg()
                runs.append(result)
                _print_run(result)
            rates = sorted(r["mb_per_s"] for r in runs)
            median = float(statistics.median(rates))
            report[label] = {"median_mb_per_s": median, "runs": runs}
            print(f"  {label}: median {median:.1f} MB/s end to end over {len(runs)} runs "
                  f"(slowest {rates[0]:.1f}, fastest {rates[-1]:.1f}); API peak RSS "
                  f"{max(r['api_peak_mb'] for r in runs):.0f} MB at most\n")  # fmt: skip
        print(json.dumps(report))


def _settle() -> None:
    """Before a timed run: the extract just written reaches the disk now rather than
    during the run (the kernel's write-back would share the cores), then a pause."""
    os.sync()
    time.sleep(1.0)


def _print_run(result: dict[str, Any]) -> None:
    print(f"{result['rows']:>9,} rows  {result['mb']:7.1f} MB  {result['seconds']:6.2f} s "
          f"{result['mb_per_s']:6.1f} MB/s end to end (sealed and uploaded in "
          f"{result['sealed_and_uploaded_s']:.2f} s, received to judged by the enclave "
          f"{result['received_to_judged_s']:.2f} s)\n"
          f"    CPU-seconds: client {result['client_cpu_s']:.2f}, API "
          f"{result['api_cpu_s']:.2f}, worker with its validator child "
          f"{result['worker_cpu_s']:.2f};  peak RSS: client "
          f"{result['client_peak_mb']:.0f} MB, API {result['api_peak_mb']:.0f} MB, "
          f"worker {result['worker_peak_mb']:.0f} MB;  load average "
          f"{result['load_before']} -> {result['load_after']}\n"
          f"    before it, the worker's first submission (1,000 rows, another partner, "
          f"starting the validator's fork server): {result['first_submission_s']:.2f} s "
          f"end to end, {result['first_received_to_judged_s']:.2f} s received to "
          f"judged")  # fmt: skip


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


if __name__ == "__main__":
    main()
