"""How linkage grows with records: DuckDB on one box up to 10M, Spark on a cluster.

    .venv/bin/python benchmarks/bench_scale.py [--sizes 1M,2M,5M,10M] [--spark-sizes 200k,1M]
        [--memory-limit 14GB] [--spill-limit 60GB] [--driver-memory 1g] [--no-spark]

Four synthetic partners (``linkage.synthetic``, hashed with the project encoder; about
``size`` records in all) are prepared once per size in a child process, in chunks of
500k people so preparation stays small. Then, each in a fresh child process so that
peak RSS is its own:

- DuckDB: ``link`` (the service's pipeline: pair-budgeted blocking, training on bounded
  samples, predict, clustering) with the configured memory limit and spill cap, spilling
  to a private scratch directory. Seconds per stage, peak RSS, the pairs each
  prediction rule generates (counted by Splink's
  ``count_comparisons_from_blocking_rules`` in the blocking plan), bytes left in the
  scratch afterwards (must be 0).
- Spark: a standalone master and worker on 127.0.0.1 started from pyspark's own
  ``bin/spark-class`` (authenticated, encrypted), the same extracts predicted with the
  model DuckDB trained at that size (so the two do the same work), with a
  ``--driver-memory`` driver. Seconds per stage and the driver JVM's peak RSS.

Prints a table and the growth per doubling of time, peak RSS and pairs: 2.0 is linear,
4.0 quadratic. The 5M and 10M sizes need a quiet machine (targets: 10M within 20 GB and
15 minutes on 2 cores / 24 GB); Spark at 1M must complete with a 1 GB driver.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

try:
    from benchmarks._child import run_in_child
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    from _child import run_in_child  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.spark_standalone: the cluster the tests start
SPEC = ROOT / "examples" / "spec-uk.json"
RECORDS_PER_PERSON = 1.26  # the demo partners' coverage (1.2) and duplicates (5%)
CHUNK_PEOPLE = 500_000


def _size(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("km")) * scale)


def _label(n: int) -> str:
    return f"{n / 1e6:g}M" if n >= 1_000_000 else f"{n / 1e3:g}k"


def prepare(work: Path, records: int, queue: Any) -> None:
    """Hashed extracts of about ``records`` records, one Parquet file per partner."""
    from linkage.encode import Encoder
    from linkage.spec import load_spec
    from linkage.synthetic import generate_partners

    start = time.perf_counter()
    encoder = Encoder(load_spec(SPEC), bytes(range(32)))
    people = int(records / RECORDS_PER_PERSON)
    writers: dict[str, pq.ParquetWriter] = {}
    rows = 0
    for i, first in enumerate(range(0, people, CHUNK_PEOPLE)):
        chunk = min(CHUNK_PEOPLE, people - first)
        for name, table in generate_partners(chunk, seed=1000 + i).items():
            hashed = encoder.encode(table.drop(["person_id"])).table
            if name not in writers:
                writers[name] = pq.ParquetWriter(work / f"{name}.parquet", hashed.schema)
            writers[name].write_table(hashed)
            rows += hashed.num_rows
    for writer in writers.values():
        writer.close()
    queue.put({"rows": rows, "seconds": time.perf_counter() - start})


def _extracts(work: Path) -> dict[str, Any]:
    return {p.stem: pq.read_table(p) for p in sorted(work.glob("*.parquet"))}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    """CPU seconds of this process: steadier than wall time on a shared machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_duckdb(work: Path, memory_limit: str, spill_limit: str | None, queue: Any) -> None:
    """Link with DuckDB; report stage seconds, peak RSS, pairs per rule, scratch left."""
    from linkage.match import Backend, link
    from linkage.spec import load_spec
    from linkage.stats import compute_figures

    start = time.perf_counter()
    extracts = _extracts(work)
    rows = sum(t.num_rows for t in extracts.values())
    read = time.perf_counter() - start
    scratch = work / "scratch"
    backend = Backend("duckdb", temp_dir=scratch, memory_limit=memory_limit,
                      spill_limit=spill_limit)  # fmt: skip
    spec = load_spec(SPEC)
    result = link(extracts, spec, backend=backend)
    t0 = time.perf_counter()
    compute_figures(result.records, spec)
    timings = {"read": read, **result.timings, "statistics": time.perf_counter() - t0}
    left = sum(f.stat().st_size for f in scratch.rglob("*") if f.is_file())
    queue.put({"rows": rows, "seconds": time.perf_counter() - start, "timings": timings,
               "peak_mb": _peak_mb(), "cpu_seconds": _cpu_seconds(),
            "pairs": result.diagnostics.get("blocking", []),
               "scratch_left_bytes": left, "model": result.model})  # fmt: skip


def run_spark(work: Path, master: str, conf: dict[str, str], model: dict[str, Any],
              queue: Any) -> None:  # fmt: skip
    """Predict and cluster on the cluster with DuckDB's model; stage seconds, driver RSS."""
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    from linkage.match import Backend, link
    from linkage.spec import load_spec

    start = time.perf_counter()
    extracts = _extracts(work)
    rows = sum(t.num_rows for t in extracts.values())
    scratch = work / "spark-scratch"
    backend = Backend("spark", temp_dir=scratch, spark_master=master, spark_config=conf)
    try:
        result = link(extracts, load_spec(SPEC), backend=backend, model=model)
        driver_mb = _jvm_peak_mb(backend.session())
    finally:
        backend.close()
    left = sum(f.stat().st_size for f in scratch.rglob("*") if f.is_file())
    queue.put({"rows": rows, "seconds": time.perf_counter() - start, "timings": result.timings,
               "peak_mb": _peak_mb(), "driver_jvm_mb": driver_mb,
               "scratch_left_bytes": left})  # fmt: skip


def _jvm_peak_mb(spark: Any) -> float:
    """Peak RSS of the driver JVM (the gateway process pyspark launched), from /proc."""
    pid = spark.sparkContext._gateway.proc.pid
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0




def _growth(rows: list[tuple[int, float]]) -> list[str]:
    """Factor per doubling between consecutive sizes: (v2/v1) ** (1 / log2(n2/n1))."""
    out = []
    for (n1, v1), (n2, v2) in itertools.pairwise(rows):
        if v1 > 0 and v2 > 0 and n2 > n1:
            out.append(f"{_label(n1)}->{_label(n2)} x{(v2 / v1) ** (1 / math.log2(n2 / n1)):.2f}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="1M,2M,5M,10M")
    parser.add_argument("--spark-sizes", default="200k,1M")
    parser.add_argument("--memory-limit", default="14GB", help="DuckDB memory_limit")
    parser.add_argument("--spill-limit", default=None, help="DuckDB max_temp_directory_size")
    parser.add_argument("--driver-memory", default="1g")
    parser.add_argument("--no-spark", action="store_true")
    parser.add_argument("--work", type=Path, default=None, help="scratch root (default: tmp)")
    args = parser.parse_args()
    sizes = sorted({_size(s) for s in args.sizes.split(",") if s})
    spark_sizes = [] if args.no_spark else sorted({_size(s) for s in args.spark_sizes.split(",")})
    root = Path(tempfile.mkdtemp(prefix="pprl-bench-scale-", dir=args.work))
    results: dict[str, Any] = {"duckdb": {}, "spark": {}}
    cluster = None
    try:
        for n in sorted(set(sizes) | set(spark_sizes)):
            work = root / _label(n)
            work.mkdir()
            prep = run_in_child(prepare, work, n)
            print(f"{_label(n)}: prepared {prep['rows']:,} hashed records in "
                  f"{prep['seconds']:.0f} s", flush=True)  # fmt: skip
            duck = run_in_child(run_duckdb, work, args.memory_limit, args.spill_limit)
            model = duck.pop("model")
            results["duckdb"][n] = duck
            stages = ", ".join(f"{k} {v:.1f}" for k, v in duck["timings"].items())
            print(f"  duckdb {duck['rows']:,} records: {duck['seconds']:.1f} s, "
                  f"{duck['cpu_seconds']:.0f} CPU-s "
                  f"(peak RSS {duck['peak_mb'] / 1024:.2f} GB; {stages}); scratch left "
                  f"{duck['scratch_left_bytes']} B", flush=True)  # fmt: skip
            for rule in duck["pairs"]:
                print(f"    pairs {rule['rule']}: {rule['pairs']:,}")
            if n in spark_sizes:
                if cluster is None:
                    from tests.spark_standalone import start_cluster

                    cluster = start_cluster(root / "cluster", worker_memory="3g")
                conf = cluster.driver_conf() | {
                    "spark.driver.memory": args.driver_memory,
                    "spark.driver.host": "127.0.0.1",
                    "spark.driver.bindAddress": "127.0.0.1",
                    "spark.executor.memory": "2g",
                }
                spark = run_in_child(run_spark, work, cluster.master_url, conf, model)
                results["spark"][n] = spark
                stages = ", ".join(f"{k} {v:.1f}" for k, v in spark["timings"].items())
                print(f"  spark  {spark['rows']:,} records: {spark['seconds']:.1f} s "
                      f"(driver {args.driver_memory}, driver JVM peak RSS "
                      f"{spark['driver_jvm_mb'] / 1024:.2f} GB; {stages}); scratch left "
                      f"{spark['scratch_left_bytes']} B", flush=True)  # fmt: skip
            shutil.rmtree(work, ignore_errors=True)
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)

    duck_rows = sorted(results["duckdb"].items())
    print("growth per doubling (2.0 linear, 4.0 quadratic):")
    print("  duckdb time:  " + "; ".join(_growth([(n, r["seconds"]) for n, r in duck_rows])))
    print("  duckdb CPU:   " + "; ".join(_growth([(n, r["cpu_seconds"]) for n, r in duck_rows])))
    print("  duckdb RSS:   " + "; ".join(_growth([(n, r["peak_mb"]) for n, r in duck_rows])))
    for stage in ("training", "predict", "cluster"):
        rows = [(n, r["timings"].get(stage, 0.0)) for n, r in duck_rows]
        print(f"  duckdb {stage}: " + "; ".join(_growth(rows)))
    rules = {rule["rule"] for _n, r in duck_rows for rule in r["pairs"]}
    for rule in sorted(rules):
        rows = [(n, float(next((x["pairs"] for x in r["pairs"] if x["rule"] == rule), 0)))
                for n, r in duck_rows]  # fmt: skip
        print(f"  pairs {rule}: " + "; ".join(_growth(rows)))
    spark_rows = sorted(results["spark"].items())
    if spark_rows:
        print("  spark time:   " + "; ".join(_growth([(n, r["seconds"]) for n, r in spark_rows])))
    print(json.dumps({k: {str(n): v for n, v in d.items()} for k, d in results.items()}))


if __name__ == "__main__":
    main()
