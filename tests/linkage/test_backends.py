"""The same small linkage on Splink's DuckDB and Spark backends gives the same overlaps.

Training samples randomly, and the backends sample differently, so the Spark run
predicts with the model trained on DuckDB: what must agree is the backend's part.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from linkage.encode import encode_table
from linkage.match import PARTNER, PERSON, Backend, link
from linkage.spec import Spec
from linkage.synthetic import generate_partners
from tests.conftest import in_ci


def _overlaps(records) -> dict[tuple[str, str], int]:  # type: ignore[no-untyped-def]
    partner = np.asarray(records.column(PARTNER).to_pylist())
    person = records.column(PERSON).to_numpy()
    names = sorted(set(partner))
    return {
        (a, b): len(set(person[partner == a]) & set(person[partner == b]))
        for i, a in enumerate(names)
        for b in names[i + 1 :]
    }


@pytest.mark.spark
@pytest.mark.slow
def test_duckdb_and_spark_give_the_same_overlap_counts(spec: Spec, tmp_path: Path) -> None:
    if shutil.which("java") is None:
        if in_ci():
            pytest.fail("Java is needed for the Spark backend test")
        pytest.skip("no Java")
    tables = generate_partners(1500, seed=5)
    extracts = {
        n: encode_table(spec, bytes(range(32)), t.drop(["person_id"])).table
        for n, t in tables.items()
    }
    trained = link(extracts, spec, backend=Backend("duckdb"))
    duck = _overlaps(trained.records)
    spark_backend = Backend("spark", temp_dir=tmp_path, spark_master="local[2]")
    try:
        # the same trained model: the backends must agree on prediction and clustering
        spark = _overlaps(link(extracts, spec, backend=spark_backend, model=trained.model).records)
    finally:
        spark_backend.spark_session().stop()
    print("duckdb", duck, "\nspark ", spark)
    assert spark == duck
