"""The same small linkage on Splink's DuckDB and Spark backends gives the same overlaps.

Training samples randomly, and the backends sample differently, so the Spark run
predicts with the model trained on DuckDB: what must agree is the backend's part.
"""

from __future__ import annotations

import os
import shutil
import string
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linkage.encode import encode_table
from linkage.match import PARTNER, PERSON, Backend, link
from linkage.match._failure import sanitise_message
from linkage.match.backend import describe_failure
from linkage.spec import Spec
from linkage.synthetic import generate_partners
from tests.conftest import FUZZ_EXAMPLES, in_ci
from tests.spark_standalone import shut_down_local_jvm


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
def test_duckdb_and_spark_give_the_same_overlap_counts(spec: Spec) -> None:
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
    # no temp_dir: the checkpoint directory is set all the same (it used to fail)
    spark_backend = Backend("spark", spark_master="local[2]")
    try:
        # the same trained model: the backends must agree on prediction and clustering
        spark = _overlaps(link(extracts, spec, backend=spark_backend, model=trained.model).records)
        # a second linkage in the same session (it used to find 'p0' already there)
        again = _overlaps(link(extracts, spec, backend=spark_backend, model=trained.model).records)
        session = spark_backend.session()
        assert [t.name for t in session.catalog.listTables() if t.isTemporary] == []
        # a real Java failure quoting a value: named by its class, the value dropped
        with pytest.raises(Exception) as caught:
            session._jvm.java.lang.Integer.parseInt("tok3n-9f8e7d")
        reason = describe_failure(caught.value)
        # (PySpark 4 re-raises it as its own NumberFormatException, Py4J as Py4JJavaError)
        assert "NumberFormatException" in reason and "For input string" in reason, reason
        assert "tok3n" not in reason and "9f8e7d" not in reason
    finally:
        spark_backend.close()
        shut_down_local_jvm()  # no JVM left behind for later tests' forked children
    print("duckdb", duck, "\nspark ", spark)
    assert spark == duck == again
    leftover = Path(tempfile.gettempdir()) / "pprl-scratch"
    assert not [p for p in leftover.glob(f"run-*-{os.getpid()}")], "scratch left behind"


@settings(max_examples=FUZZ_EXAMPLES * 10)
@given(
    value=st.text(
        alphabet=string.ascii_letters + string.digits + "-_/+=.@ ", min_size=1, max_size=40
    ).filter(lambda v: any(c.isdigit() for c in v) or len(v.strip()) > 24),
    template=st.sampled_from(
        [
            "For input string: {q}{v}{q}",
            "Cannot cast {q}{v}{q} to INT",
            "{q}{v}{q} is not a valid date",
            "[CAST_INVALID_INPUT] The value {q}{v}{q} of the type STRING cannot be cast",
            "Duplicate key {v} in map",
            "Conversion Error: Could not convert string {q}{v}{q}",
            "value={v}",
            "Key ({v}) already exists",
        ]
    ),
    quote=st.sampled_from(["'", '"', "`", ""]),
)
def test_failure_messages_never_carry_values(value: str, template: str, quote: str) -> None:
    """Values a message may quote: with a digit (tokens, dates, ids) or long, quoted or not."""
    if not quote and not any(c.isdigit() for c in value) and "{q}" in template:
        quote = "'"  # an unquoted digit-free short word is indistinguishable from prose
    message = template.format(v=value, q=quote)
    reason = describe_failure(ValueError(message + "\nat line 2 " + value))
    for word in value.split():
        if any(c.isdigit() for c in word) or len(word) > 24:
            assert word not in reason, (message, reason)


def test_known_spark_causes_stay_readable() -> None:
    assert sanitise_message("Checkpoint directory has not been set in the SparkContext") == (
        "Checkpoint directory has not been set in the SparkContext"
    )
    assert (
        sanitise_message(
            "[TABLE_OR_VIEW_ALREADY_EXISTS] Cannot create table or view `p0` because it already exists."
        )
        == "[TABLE_OR_VIEW_ALREADY_EXISTS] Cannot create table or view because it already exists"
    )
