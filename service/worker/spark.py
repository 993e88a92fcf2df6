"""The enclave worker's linkage backend: its Spark session, and DuckDB's limits.

A process starts at most one Spark session (Spark allows one per process), on its first
Spark run, serves every later run with it (per-run table names, views and cache dropped
after each), and stops it when the process exits. The worker computes each run in a
forked child it can kill, so in practice each run's child starts and stops its own
session; a killed child takes its driver down and the cluster then ends its executors.
Each run gets its own directory under the Spark scratch (``PPRL_SPARK_SCRATCH_DIR``;
shared, encrypted storage on a real cluster) for its Parquet inputs and Splink's
checkpoints; the backend deletes it when the run ends, and a restarted worker sweeps
what a killed one left.
"""

from __future__ import annotations

import atexit
import json
import multiprocessing.util
import os
import shutil
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

# linkage.match (Splink, DuckDB) is imported where a run needs it: Settings imports
# this module to parse PPRL_SPARK_CONF, and the API process must not load the engine
if TYPE_CHECKING:
    from linkage.match import Backend
    from service.settings import Settings

__all__ = [
    "SECURE_CLUSTER_CONF",
    "parse_spark_conf",
    "refuse_insecure_cluster",
    "run_backend",
    "stop_worker_spark",
    "sweep_spark_scratch",
]

#: what production needs before record-level data may cross a network to executors
SECURE_CLUSTER_CONF = (
    "spark.authenticate",
    "spark.network.crypto.enabled",
    "spark.io.encryption.enabled",
)
_lock = threading.Lock()
_session: Any = None
_local: Path | None = None
_owner: int | None = None


def parse_spark_conf(text: str) -> dict[str, str]:
    """``PPRL_SPARK_CONF`` as a JSON object or ``k=v`` pairs (comma or newline separated).

    Raises ``ValueError`` naming the entry that is neither.
    """
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"PPRL_SPARK_CONF is not valid JSON (at character {exc.pos})"
            ) from None
        if not isinstance(data, dict):
            raise ValueError("PPRL_SPARK_CONF must be a JSON object of Spark settings")
        return {str(k): _conf_value(v) for k, v in data.items()}
    conf: dict[str, str] = {}
    for number, entry in enumerate(text.replace("\n", ",").split(","), start=1):
        if not entry.strip():
            continue
        key, sep, value = entry.partition("=")
        if not sep or not key.strip().startswith("spark."):
            raise ValueError(
                f"PPRL_SPARK_CONF entry {number} is not spark.<name>=<value>"
            )  # no echo: the entry may hold the authentication secret
        conf[key.strip()] = value.strip()
    return conf


def _conf_value(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _is_local(master: str) -> bool:
    return master == "local" or master.startswith("local[")


def refuse_insecure_cluster(master: str, conf: Mapping[str, str]) -> None:
    """Refuse a cluster master unless Spark authenticates and encrypts network and disk
    traffic (executors on other hosts then hold tokens)."""
    if _is_local(master):
        return
    missing = [k for k in SECURE_CLUSTER_CONF if str(conf.get(k, "")).lower() != "true"]
    if missing:
        raise ValueError(
            f"PPRL_SPARK_MASTER {master.split('://')[0]}:// needs "
            + ", ".join(f"{k}=true" for k in missing)
            + " in PPRL_SPARK_CONF in production"
        )
    if not conf.get("spark.authenticate.secret") and not conf.get("spark.authenticate.secret.file"):
        raise ValueError(
            "spark.authenticate needs spark.authenticate.secret (or .secret.file) "
            "in PPRL_SPARK_CONF in production"
        )


def worker_spark(settings: Settings) -> Any:
    """This process's Spark session, started on first use with the worker's settings.

    A session belongs to the process that started it: a forked child (the worker
    computes each run in one it can kill) starts its own, and stops it when it exits,
    so a killed run takes its driver, and with it its executors, down.
    """
    global _session, _local, _owner
    with _lock:
        if _owner != os.getpid():  # inherited through fork: the JVM is the parent's
            _session, _local, _owner = None, None, os.getpid()
        if _session is None:
            from pyspark.sql import SparkSession

            from linkage.match.backend import scratch_name, spark_conf

            conf = spark_conf(settings.spark_master, settings.spark_conf,
                              driver_host=settings.spark_driver_host,
                              bind_address=settings.spark_bind_address)  # fmt: skip
            # the driver's own spill and broadcast files: named like a run directory, so
            # the sweep removes it once this process is gone
            settings.spark_scratch.mkdir(parents=True, exist_ok=True, mode=0o700)
            _local = settings.spark_scratch / scratch_name()
            _local.mkdir(mode=0o700)
            conf.setdefault("spark.local.dir", str(_local))
            builder = SparkSession.builder
            for key, value in conf.items():
                builder = builder.config(key, value)
            _session = builder.getOrCreate()
            # the driver's log goes to the worker's stderr, outside the enclave, and Spark
            # logs failed tasks with their exception message, which can quote a value
            _session.sparkContext.setLogLevel("OFF")
            atexit.register(stop_worker_spark)
            # a multiprocessing child leaves by os._exit, past atexit: its finalizers run
            multiprocessing.util.Finalize(None, stop_worker_spark, exitpriority=50)
        return _session


def stop_worker_spark() -> None:
    """Stop the worker's Spark session (executors delete their local files on exit)."""
    global _session
    with _lock:
        if _session is not None and _owner == os.getpid():
            try:
                _session.stop()
            finally:
                _session = None
                if _local is not None:
                    shutil.rmtree(_local, ignore_errors=True)


def sweep_spark_scratch(settings: Settings) -> int:
    """Remove the run and driver directories that killed workers of this host left in
    the Spark scratch (a live worker's, and other hosts', are left alone)."""
    from linkage.match.backend import sweep_scratch

    return sweep_scratch(settings.spark_scratch)


def run_backend(settings: Settings, workdir: Path) -> Backend:
    """The backend for one run: DuckDB with the worker's memory limit, spill cap and the
    run's private directory; or Spark with the worker's session and its scratch."""
    from linkage.match import Backend

    if settings.linkage_backend == "spark":
        return Backend(
            kind="spark",
            temp_dir=settings.spark_scratch,
            spark_master=settings.spark_master,
            spark_session=worker_spark(settings),
        )
    return Backend(
        kind="duckdb",
        temp_dir=workdir,
        memory_limit=settings.linkage_memory_limit,
        spill_limit=settings.linkage_spill_limit,
        threads=settings.linkage_threads,
    )
