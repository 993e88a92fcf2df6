"""The one place a Splink backend is created: DuckDB by default, Spark to scale out.

Record-level data lives only inside the backend and in one private scratch directory
per linkage, which :meth:`Backend.release` removes however the linkage ends:

- DuckDB: an in-memory database under ``memory_limit``, spilling to the linkage's
  scratch (``temp_directory``) up to ``spill_limit`` (``max_temp_directory_size``).
- Spark: each extract is written as Parquet to the linkage's scratch and read by the
  executors (``spark.read.parquet``), so no record passes through the driver; Splink
  breaks lineage by writing its intermediates as Parquet to the same scratch (the
  checkpoint directory), so every record-level file of a linkage is under one
  directory that is deleted at its end. Results come back as aggregates or as the two
  columns the statistics need. One Spark session serves many linkages: inputs get
  per-linkage table names, and the session's views, cache and shuffle files are
  cleared after each.

On a real cluster ``temp_dir`` must be storage every executor and the driver share,
encrypted at rest (Spark's ``spark.io.encryption`` covers shuffle and spill, not
Parquet files).
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import tempfile
import uuid
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, ParamSpec, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from linkage.errors import LinkageError, MatchError
from linkage.match._failure import describe_failure

__all__ = [
    "SCRATCH_PREFIX",
    "Backend",
    "describe_failure",
    "releases_backend",
    "scratch_name",
    "spark_conf",
    "sweep_scratch",
]

#: scratch directories are named ``run-<host>-<uid>-<pid>`` so that a restarted process
#: can sweep what a killed one left on this host, and leave other hosts' alone
SCRATCH_PREFIX = "run-"
_P = ParamSpec("_P")
_R = TypeVar("_R")


def scratch_name() -> str:
    """A fresh scratch directory name carrying this host and process."""
    host = "".join(c for c in socket.gethostname() if c.isalnum())[:24] or "host"
    return f"{SCRATCH_PREFIX}{host}-{uuid.uuid4().hex[:12]}-{os.getpid()}"


def spark_conf(
    master: str,
    extra: Mapping[str, str] | None = None,
    *,
    driver_host: str | None = None,
    bind_address: str | None = None,
) -> dict[str, str]:
    """The Spark configuration pprl starts a session with; ``extra`` wins over defaults.

    No UI (it would show query plans with literals), Arrow for the small results that
    come back to the driver, few shuffle partitions (the extracts are millions of
    rows, not billions).
    """
    conf = {
        "spark.master": master,
        "spark.app.name": "pprl-enclave",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.shuffle.partitions": "8",
        "spark.default.parallelism": "8",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.adaptive.enabled": "true",
    }
    if driver_host:
        conf["spark.driver.host"] = driver_host
    if bind_address:
        conf["spark.driver.bindAddress"] = bind_address
    conf.update(extra or {})
    return conf


@dataclass
class Backend:
    """Which Splink backend to use and where a linkage may write temporary files.

    ``temp_dir``: where each linkage makes its private scratch directory (default: the
    system's temporary directory). ``spark_session``: an existing session to use (a
    worker keeps one for many runs); without it the backend starts its own, which
    :meth:`close` stops.
    """

    kind: Literal["duckdb", "spark"] = "duckdb"
    temp_dir: Path | None = None
    spark_master: str = "local[2]"
    threads: int | None = None
    memory_limit: str | None = "6GB"  # DuckDB spills to the scratch beyond this
    spill_limit: str | None = None  # DuckDB max_temp_directory_size (default: 90% of free disk)
    spark_config: Mapping[str, str] = field(default_factory=dict, repr=False)
    spark_session: Any = field(default=None, repr=False)
    _own_spark: Any = field(default=None, init=False, repr=False)
    _scratch: Path | None = field(default=None, init=False, repr=False)
    _api: Any = field(default=None, init=False, repr=False)

    # -- one linkage -------------------------------------------------------------

    def api(self) -> Any:
        """A fresh Splink ``DatabaseAPI`` for one linkage (ends the previous one first)."""
        self.release()
        self._scratch = self._new_scratch()
        if self.kind == "duckdb":
            self._api = self._duckdb_api(self._scratch)
        else:
            self._api = self._spark_api(self._scratch)
        return self._api

    def register(self, api: Any, table: pa.Table, name: str) -> Any:
        """Register ``table`` as the input shown as ``name`` under a per-linkage table
        name (a long-lived Spark session keeps earlier names until they are dropped)."""
        physical = f"pprl_in_{uuid.uuid4().hex[:12]}_{name}"
        if self.kind == "duckdb":
            return api.register(table, dataset_display_name=name, table_name=physical)
        assert self._scratch is not None, "register() needs api() first"
        inputs = self._scratch / "inputs"
        inputs.mkdir(mode=0o700, exist_ok=True)
        path = inputs / f"{physical}.parquet"
        pq.write_table(table, path)
        frame = self.session().read.parquet(str(path))  # executors read the file
        return api.register(frame, dataset_display_name=name, table_name=physical)

    def release(self) -> None:
        """End the current linkage: drop its tables, views and cached data and delete its
        scratch directory (spill, inputs, checkpoints). Safe to call more than once."""
        api, scratch = self._api, self._scratch
        self._api = self._scratch = None
        try:
            if api is not None and self.kind == "duckdb":
                api.duckdb_con.close()  # DuckDB deletes its spill files on close
            elif api is not None:
                self._clear_spark_state()
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)

    def close(self) -> None:
        """Release the current linkage and stop a Spark session this backend started."""
        self.release()
        if self._own_spark is not None:
            self._own_spark.stop()
            self._own_spark = None

    # -- DuckDB ------------------------------------------------------------------

    def _duckdb_api(self, scratch: Path) -> Any:
        import duckdb
        from splink import DuckDBAPI

        con = duckdb.connect(":memory:")
        con.execute(f"SET temp_directory = '{_sql_path(scratch / 'spill')}'")
        if self.memory_limit:
            con.execute(f"SET memory_limit = '{_sql_word(self.memory_limit)}'")
        if self.spill_limit:
            con.execute(f"SET max_temp_directory_size = '{_sql_word(self.spill_limit)}'")
        if self.threads:
            con.execute(f"SET threads = {int(self.threads)}")
        con.execute("SET preserve_insertion_order = false")  # lets large joins stream
        return DuckDBAPI(con)

    # -- Spark -------------------------------------------------------------------

    def session(self) -> Any:
        """The Spark session: the one given, or one this backend starts (and stops)."""
        if self.spark_session is not None:
            return self.spark_session
        if self._own_spark is None:
            from pyspark.sql import SparkSession

            builder = SparkSession.builder
            for key, value in spark_conf(self.spark_master, self.spark_config).items():
                builder = builder.config(key, value)
            self._own_spark = builder.getOrCreate()
            # Spark logs failed tasks with their exception message, which can quote a value
            self._own_spark.sparkContext.setLogLevel("OFF")
        return self._own_spark

    def _spark_api(self, scratch: Path) -> Any:
        from splink import SparkAPI

        spark = self.session()
        checkpoints = scratch / "checkpoints"
        checkpoints.mkdir(mode=0o700)
        # Always set, also without temp_dir: Splink's "parquet" lineage breaking needs it.
        spark.sparkContext.setCheckpointDir(str(checkpoints))
        # "parquet" on purpose: each intermediate is written once to the checkpoint dir
        # and read back, so lineage stays short, nothing is held in executor memory
        # between steps (unlike "persist"), and every intermediate sits under this
        # linkage's scratch, which release() deletes.
        return SparkAPI(  # type: ignore[no-untyped-call]
            spark_session=spark,
            break_lineage_method="parquet",
            register_udfs_automatically=False,  # exact token levels need no Scala UDFs
        )

    def _clear_spark_state(self) -> None:
        spark = self.session()
        for table in spark.catalog.listTables():
            if table.isTemporary:
                spark.catalog.dropTempView(table.name)
        spark.catalog.clearCache()
        # a full GC on the driver lets Spark's ContextCleaner tell executors to delete
        # the shuffle files of the dropped frames now, not at some later collection
        spark.sparkContext._jvm.System.gc()

    # -- scratch -----------------------------------------------------------------

    def _new_scratch(self) -> Path:
        base = self.temp_dir
        if base is None:
            base = Path(tempfile.gettempdir()) / "pprl-scratch"
            sweep_scratch(base)
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = base / scratch_name()
        path.mkdir(mode=0o700)
        # if the caller never releases (an exception it swallowed, interpreter exit)
        weakref.finalize(self, shutil.rmtree, path, True)
        return path


def sweep_scratch(base: Path) -> int:
    """Remove scratch directories under ``base`` left by dead processes of this host."""
    from linkage.match._procs import owned_by_live_process_or_other_host

    removed = 0
    if not base.is_dir():
        return 0
    for path in base.glob(f"{SCRATCH_PREFIX}*"):
        if owned_by_live_process_or_other_host(path.name):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
    return removed


def releases_backend(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Decorate a function taking ``backend=``: the backend's linkage is released when
    it returns or raises, so no record-level intermediate outlives a failed run, and a
    backend failure becomes a :class:`MatchError` naming its cause (never its values)."""

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return fn(*args, **kwargs)
        except LinkageError:
            raise
        except Exception as exc:
            kind = getattr(kwargs.get("backend"), "kind", "duckdb")
            raise MatchError(f"linkage on {kind} failed: {describe_failure(exc)}") from None
        finally:
            backend = kwargs.get("backend")
            if isinstance(backend, Backend):
                backend.release()

    return wrapper


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


def _sql_word(value: str) -> str:
    """A size such as ``6GB`` or ``20 GiB``: refuse anything else in SQL."""
    cleaned = value.strip()
    if not cleaned.replace(" ", "").replace(".", "").isalnum():
        raise ValueError(f"not a size: {value!r} (expected something like 6GB)")
    return cleaned
