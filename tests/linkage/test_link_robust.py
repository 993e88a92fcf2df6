"""Linkage that never blows up: no matches, degenerate columns, pair budgets, logging."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pytest

from linkage.encode import Encoder
from linkage.errors import MatchError
from linkage.match import PARTNER, PERSON, PERSON_LOOSE, PERSON_STRICT, link
from linkage.spec import load_spec, parse_spec
from linkage.stats import compute_figures
from linkage.synthetic import DEMO_PARTNERS, generate_partners
from tests.conftest import EXAMPLE_SPEC

KEY = bytes(range(32))


def _hashed(tables: dict[str, pa.Table]) -> dict[str, pa.Table]:
    encoder = Encoder(load_spec(EXAMPLE_SPEC), KEY)
    return {n: encoder.encode(t.drop(["person_id"])).table for n, t in tables.items()}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_partners_with_nobody_in_common_release_zeros(seed: int) -> None:
    """Two partners drawn from different populations, no duplicates: zeros, no failure."""
    clean = replace(DEMO_PARTNERS[1], duplicate=0.0, coverage=0.5)
    a = generate_partners(300, [replace(clean, name="a")], seed=seed)["a"]
    b = generate_partners(300, [replace(clean, name="b")], seed=seed + 1000)["b"]
    spec = load_spec(EXAMPLE_SPEC)
    hashed = _hashed({"a": a, "b": b})
    result = link(hashed, spec)
    figures = compute_figures(result.records, spec)
    assert figures.counts["persons.both.a+b"] == 0
    assert figures.counts["persons.total"] == hashed["a"].num_rows + hashed["b"].num_rows
    assert "fixed" in result.diagnostics["training"]["prior_method"]


def test_one_postcode_for_half_the_records_is_read_as_missing() -> None:
    """A value held by half the records (a hostel, a placeholder) is no evidence: it is
    masked before blocking and training, and the analyst is told."""
    tables = generate_partners(3000, seed=11)
    name = sorted(tables)[0]
    t = tables[name]
    half = np.arange(t.num_rows) < t.num_rows // 2
    postcode = np.where(half, "LS1 1AA", np.asarray(t.column("postcode").to_pylist(), object))
    tables[name] = t.set_column(
        t.schema.get_field_index("postcode"), "postcode", pa.array(postcode, pa.string())
    )
    spec = load_spec(EXAMPLE_SPEC)
    result = link(_hashed(tables), spec)
    assert any(
        w.startswith("postcode: one value covers") and "read as missing" in w
        for w in result.diagnostics["warnings"]
    )
    # the masked column is no longer degenerate, so nothing warns it away from training
    assert not any(w.startswith("postcode.full") for w in result.diagnostics["warnings"])
    # still right: records of one person stay together
    person = result.records.column(PERSON).to_numpy()
    assert len(np.unique(person)) < result.records.num_rows


def test_rules_over_the_pair_budget_are_narrowed_or_refused() -> None:
    tables = generate_partners(1500, seed=12)
    spec = load_spec(EXAMPLE_SPEC)
    hashed = _hashed(tables)
    result = link(hashed, spec, max_pairs_per_rule=400)
    warnings = result.diagnostics["warnings"]
    assert any("over the budget of 400" in w for w in warnings)
    assert all(r["pairs"] <= 400 for r in result.diagnostics["blocking"])
    # a spec whose only rule cannot be narrowed enough: one safe sentence, no attempt
    coarse = parse_spec({
        "version": "1", "reference_date": "2026-04-01",
        "identifiers": [{"name": "sex", "type": "sex"},
                        {"name": "dob", "type": "date", "column": "date_of_birth"}],
        "matching": {"blocking": [["sex"]]},
    })  # fmt: skip
    encoder = Encoder(coarse, KEY)
    few = {n: encoder.encode(t.drop(["person_id"])).table for n, t in tables.items()}
    with pytest.raises(MatchError, match="every blocking rule makes more than 10 record pairs"):
        link(few, coarse, max_pairs_per_rule=10)


def test_ranges_bracket_the_linked_figures_and_splink_logs_are_routed(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    tables = generate_partners(1500, seed=13)
    spec = load_spec(EXAMPLE_SPEC)
    logger = logging.getLogger("test.linkage")
    with caplog.at_level(logging.WARNING, logger="test.linkage"):
        result = link(_hashed(tables), spec, logger=logger)
    out, err = capfd.readouterr()
    assert "splink" not in err.lower() and "splink" not in out.lower()
    records = result.records
    n = {
        c: len(np.unique(records.column(c).to_numpy()))
        for c in (PERSON, PERSON_STRICT, PERSON_LOOSE)
    }
    # a stricter threshold links less, so it finds more distinct people
    assert n[PERSON_LOOSE] <= n[PERSON] <= n[PERSON_STRICT]
    assert set(records.column(PARTNER).to_pylist()) == set(tables)


@pytest.mark.parametrize("seed", [31, 32])
def test_married_name_change_still_links(seed: int) -> None:
    """Forename, date of birth and NHS number agree, surname and address do not."""
    tables = generate_partners(2500, seed=seed)
    a_name, b_name = "a_and_e", "social_care"
    a, b = tables[a_name], tables[b_name]
    a_ids = dict(zip(a.column("person_id").to_pylist(), a.column("nhs_number").to_pylist(),
                     strict=True))  # fmt: skip
    b_rows = b.to_pylist()
    changed = []
    for i, row in enumerate(b_rows):
        usable = row["nhs_number"] and row["date_of_birth"] and row["forename"]
        if len(changed) < 40 and usable and a_ids.get(row["person_id"]):
            row["surname"] = "Zzyzxmarried"
            row["postcode"] = "LS99 9ZZ"
            changed.append(i)
    tables[b_name] = pa.Table.from_pylist(b_rows, schema=b.schema)
    encoder = Encoder(load_spec(EXAMPLE_SPEC), KEY)
    hashed, truth = {}, {}
    for n, t in tables.items():
        hashed[n] = encoder.encode(t.drop(["person_id"])).table
        truth[n] = np.asarray(t.column("person_id").to_pylist())[
            hashed[n].column("row_ref").to_numpy() - 1
        ]
    result = link(hashed, load_spec(EXAMPLE_SPEC))
    partner = np.asarray(result.records.column(PARTNER).to_pylist())
    person = result.records.column(PERSON).to_numpy()
    rows_b = hashed[b_name].column("row_ref").to_numpy() - 1
    linked = 0
    for i in changed:
        (k,) = np.flatnonzero(rows_b == i)
        pid = truth[b_name][k]
        mine = person[partner == b_name][k]
        theirs = person[partner == a_name][truth[a_name] == pid]
        linked += bool(len(theirs)) and mine in set(theirs.tolist())
    assert linked >= 0.95 * len(changed)


def test_chunked_predict_finds_the_same_people_as_one_pass() -> None:
    """Large linkages score their blocked pairs in chunks (bounded memory); the chunks
    must together find exactly the pairs one pass finds."""
    from linkage.match.link import predict_chunks

    assert predict_chunks([-1, 10]) == 1
    assert predict_chunks([150_000_000, -1, 20_000_000]) == 3  # 60M pairs a chunk
    spec = load_spec(EXAMPLE_SPEC)
    hashed = _hashed(generate_partners(1500, seed=5))
    first = link(hashed, spec)
    one = link(hashed, spec, model=first.model, predict_chunks=1)
    chunked = link(hashed, spec, model=first.model, predict_chunks=4)
    assert chunked.diagnostics["predict_chunks"] == 4
    for column in (PERSON, PERSON_STRICT, PERSON_LOOSE):
        assert chunked.records.column(column).equals(one.records.column(column))
    assert len(set(one.records.column(PERSON).to_pylist())) < one.records.num_rows  # linked
