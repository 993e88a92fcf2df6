"""The service on a real Spark standalone cluster (master + worker on 127.0.0.1, started
from pyspark's own ``bin/spark-class``, authenticated and encrypted): one worker, one
Spark session, two runs in a row, each releasing exactly what DuckDB releases on the
same submissions with the same trained model, and no record-level file left behind.

Training samples pairs at random and the backends sample differently, so every run
predicts with the model the DuckDB run trained: what must agree is the backend's part
(loading, blocking, scoring, clustering, the results coming back).
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from linkage.match import link
from linkage.spec import load_spec
from service.settings import Settings
from service.worker.loop import Worker
from service.worker.spark import stop_worker_spark
from tests.conftest import EXAMPLE_SPEC, in_ci
from tests.service_fixtures import Service
from tests.spark_standalone import (
    SparkCluster,
    java_available,
    shut_down_local_jvm,
    start_cluster,
)

pytestmark = [pytest.mark.spark, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkCluster]:
    if not java_available():
        if in_ci():
            pytest.fail("Java is needed for the Spark cluster test")
        pytest.skip("no Java")
    # a JVM another test left in this process would be inherited by the forked run
    # children below and used instead of their own
    shut_down_local_jvm()
    # the driver (this process) must bind to loopback too
    previous = os.environ.get("SPARK_LOCAL_IP")
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    started = start_cluster(tmp_path_factory.mktemp("spark-cluster"))
    try:
        yield started
    finally:
        stop_worker_spark()  # the worker's session, started by the test's Worker
        started.stop()
        if previous is None:
            os.environ.pop("SPARK_LOCAL_IP", None)
        else:
            os.environ["SPARK_LOCAL_IP"] = previous


def _run(s: Service, worker: Worker) -> dict[str, Any]:
    analyst = s.as_(s.tokens["analyst"])
    r = s.http.post(f"/v1/projects/{s.project_id}/runs", headers=analyst, json={})
    assert r.status_code == 202, r.text
    run_id = r.json()["id"]
    assert worker.run_once() == run_id
    state = s.http.get(f"/v1/projects/{s.project_id}/runs/{run_id}", headers=analyst).json()
    assert state["status"] == "done", (state.get("message"), state)
    released = s.http.get(f"/v1/projects/{s.project_id}/runs/{run_id}/results", headers=analyst)
    assert released.status_code == 200, released.text
    return dict(released.json())


_MODEL_FILE = "test-one-model.json"


def _compute_with_one_model(settings: Settings, *args: Any) -> Any:
    """The worker's run, in its child, predicting with the model the test trained."""
    from service.worker import enclave, loop

    model = json.loads((settings.data_dir / _MODEL_FILE).read_text())

    @functools.wraps(link)
    def link_with_one_model(*a: Any, **kw: Any) -> Any:
        return link(*a, model=model, **kw)

    enclave.link = link_with_one_model  # type: ignore[assignment]  # this child only
    return loop._compute(settings, *args)


def _files(root: Path) -> list[str]:
    """Files left under ``root``; a run still deleting its directory may remove one while
    this looks (os.walk skips what vanished, where Path.rglob raised)."""
    return sorted(str(Path(d, f).relative_to(root)) for d, _, files in os.walk(root) for f in files)


# the database is not what this test is about, and CI has ~3 minutes for it: SQLite only
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_two_service_runs_on_a_standalone_cluster_release_what_duckdb_releases(
    cluster: SparkCluster,
    project_service: Service,
    hashed_extracts: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    s = project_service
    for partner in ("housing", "police"):
        r = s.upload(s.tokens[partner], hashed_extracts[partner].read_bytes())
        assert r.status_code in (201, 202), r.text  # 202: the enclave validates it first

    # one model, trained here on the same extracts, for every run of both backends. The
    # worker computes each run in a child of its fork server, a fresh interpreter, so the
    # child's function (by reference: this module's) reads the model from the data dir
    spec = load_spec(EXAMPLE_SPEC)
    extracts = {p: pq.read_table(hashed_extracts[p]) for p in ("housing", "police")}
    model = link(extracts, spec).model
    (s.settings.data_dir / _MODEL_FILE).write_text(json.dumps(model))
    monkeypatch.setattr("service.worker.loop._compute", _compute_with_one_model)
    duck = _run(s, Worker(s.settings))

    scratch = tmp_path / "spark-scratch"
    spark_settings = Settings(**{
        **s.settings.model_dump(),
        "database_url": s.settings.url,
        "linkage_backend": "spark",
        "spark_master": cluster.master_url,
        "spark_conf": cluster.driver_conf(),
        "spark_scratch_dir": scratch,
        "spark_driver_host": "127.0.0.1",
        "spark_bind_address": "127.0.0.1",
    })  # fmt: skip
    worker = Worker(spark_settings)
    for attempt in (1, 2):  # run 2 used to fail: the first run's scratch, 'p0' exists
        spark = _run(s, worker)
        assert spark["figures"] == duck["figures"], f"run {attempt} differs from DuckDB"
        assert spark["suppressed"] == duck["suppressed"]
        # nothing stays: no input, checkpoint or driver file (the run's child process may
        # still be stopping its session when the release is stored: give it a moment)
        deadline = time.monotonic() + 60
        while _files(scratch) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _files(scratch) == []
        assert not list(s.settings.work_dir.glob("run-*"))
