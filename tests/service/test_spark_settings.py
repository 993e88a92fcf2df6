"""Spark and DuckDB settings of the worker: PPRL_SPARK_CONF parsing, the production
refusal of an unencrypted cluster, and the sweep of what a killed worker left."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from linkage.match.backend import scratch_name
from service.settings import Settings
from service.worker.spark import parse_spark_conf, run_backend, sweep_spark_scratch

SECURE = {
    "spark.authenticate": "true",
    "spark.authenticate.secret": "s3cret-value",
    "spark.network.crypto.enabled": "true",
    "spark.io.encryption.enabled": "true",
}


def _production(tmp_path: Path, **extra: object) -> Settings:
    return Settings(
        environment="production",
        data_dir=tmp_path,
        database_url="postgresql+psycopg://postgres@127.0.0.1:5432/test",  # type: ignore[arg-type]
        session_secret="a-real-session-secret",  # type: ignore[arg-type]
        linkage_backend="spark",
        **extra,  # type: ignore[arg-type]
    )


def test_spark_conf_from_the_environment_as_json_or_pairs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PPRL_SPARK_CONF", json.dumps({"spark.driver.memory": "1g",
                                                      "spark.authenticate": True}))  # fmt: skip
    assert Settings(data_dir=tmp_path).spark_conf == {
        "spark.driver.memory": "1g", "spark.authenticate": "true"}  # fmt: skip
    monkeypatch.setenv("PPRL_SPARK_CONF", "spark.driver.memory=1g, spark.cores.max = 4\n")
    assert Settings(data_dir=tmp_path).spark_conf == {
        "spark.driver.memory": "1g", "spark.cores.max": "4"}  # fmt: skip


@given(st.text(min_size=1, max_size=30).filter(lambda s: not set(s) & set("=,\n\r")))
def test_a_bad_spark_conf_entry_is_named_by_position_and_never_echoed(junk: str) -> None:
    if not junk.strip():
        return
    with pytest.raises(ValueError, match="entry 2 is not") as caught:
        parse_spark_conf(f"spark.a=1,{junk}")
    # one fixed sentence whatever the entry held (it may be the authentication secret)
    assert str(caught.value) == "PPRL_SPARK_CONF entry 2 is not spark.<name>=<value>"


def test_production_refuses_a_cluster_without_authentication_and_encryption(
    tmp_path: Path,
) -> None:
    for missing in SECURE:
        conf = {k: v for k, v in SECURE.items() if k != missing}
        with pytest.raises(ValidationError) as caught:
            _production(tmp_path, spark_master="spark://10.0.0.5:7077", spark_conf=conf)
        assert missing.split(".")[-1] in str(caught.value)
        assert "s3cret-value" not in str(caught.value)
    ok = _production(tmp_path, spark_master="spark://10.0.0.5:7077", spark_conf=SECURE)
    assert "s3cret-value" not in repr(ok)
    # local mode keeps everything in the worker's own process
    _production(tmp_path, spark_master="local[2]")


def test_duckdb_runs_get_the_memory_limit_and_spill_cap(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, linkage_memory_limit="1GB",
                        linkage_spill_limit="3GB", linkage_threads=1)  # fmt: skip
    backend = run_backend(settings, tmp_path / "run")
    api = backend.api()
    try:
        con = api.duckdb_con
        assert con.execute("SELECT current_setting('memory_limit')").fetchone()[0] in (
            "1.0 GiB",
            "953.6 MiB",
            "1.0 GB",
        )
        assert con.execute("SELECT current_setting('max_temp_directory_size')").fetchone()[0] in (
            "3.0 GiB",
            "2.7 GiB",
            "3.0 GB",
            "2.7 GB",
            "2.8 GiB",
        )
        spill = Path(con.execute("SELECT current_setting('temp_directory')").fetchone()[0])
        assert spill.is_relative_to(tmp_path / "run")
    finally:
        backend.release()
    assert not list((tmp_path / "run").iterdir())


def test_the_sweep_removes_dead_workers_scratch_only(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    scratch = settings.spark_scratch
    scratch.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        ours = scratch_name()
        host = ours.split("-")[1]
        paths = {
            "dead": scratch / f"run-{host}-abc-{dead.pid}",
            "alive": scratch / f"run-{host}-abc-{alive.pid}",
            "self": scratch / ours,
            "other host": scratch / f"run-otherhost-abc-{dead.pid}",
        }
        for path in paths.values():
            (path / "checkpoints").mkdir(parents=True)
            (path / "checkpoints" / "part-0.parquet").write_bytes(b"x")
        assert sweep_spark_scratch(settings) == 1
        assert not paths["dead"].exists()
        assert all(paths[k].exists() for k in ("alive", "self", "other host"))
    finally:
        alive.kill()
        alive.wait()
    assert os.getpid() != dead.pid
