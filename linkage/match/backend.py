"""The one place a Splink backend is created: DuckDB by default, Spark to scale out.

Record-level data lives only inside the backend: an in-memory DuckDB (spilling, if it
must, to a private temporary directory that the caller removes) or the Spark session.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["Backend"]


@dataclass
class Backend:
    """Which Splink backend to use and where it may write temporary files."""

    kind: Literal["duckdb", "spark"] = "duckdb"
    temp_dir: Path | None = None
    spark_master: str = "local[2]"
    threads: int | None = None
    memory_limit: str | None = "6GB"  # DuckDB spills to temp_dir beyond this
    _spark: Any = field(default=None, repr=False)

    def api(self) -> Any:
        """A fresh Splink ``DatabaseAPI`` for one linkage."""
        if self.kind == "duckdb":
            import duckdb
            from splink import DuckDBAPI

            con = duckdb.connect(":memory:")
            if self.temp_dir is not None:
                con.execute(f"SET temp_directory = '{self.temp_dir}'")
            if self.memory_limit:
                con.execute(f"SET memory_limit = '{self.memory_limit}'")
            if self.threads:
                con.execute(f"SET threads = {int(self.threads)}")
            return DuckDBAPI(con)
        from splink import SparkAPI

        return SparkAPI(spark_session=self.spark_session())  # type: ignore[no-untyped-call]

    def spark_session(self) -> Any:
        """The Spark session (local mode in tests, a cluster URL in production)."""
        if self._spark is None:
            from pyspark.sql import SparkSession

            builder = (
                SparkSession.builder.master(self.spark_master)
                .appName("pprl-enclave")
                .config("spark.ui.enabled", "false")
                .config("spark.sql.shuffle.partitions", "8")
                .config("spark.default.parallelism", "8")
            )
            if self.temp_dir is not None:
                builder = builder.config("spark.local.dir", str(self.temp_dir))
            self._spark = builder.getOrCreate()
            if self.temp_dir is not None:
                self._spark.sparkContext.setCheckpointDir(str(self.temp_dir / "checkpoints"))
        return self._spark

    def to_backend_table(self, table: Any) -> Any:
        """Hand an Arrow table to the backend in the form its ``register`` accepts."""
        if self.kind == "duckdb":
            return table
        return self.spark_session().createDataFrame(table.to_pandas())
