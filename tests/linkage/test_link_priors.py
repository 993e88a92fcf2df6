"""Dominant values read as missing, and a prior of its own for pairs within one extract."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from linkage.encode import Encoder
from linkage.match import PARTNER, PERSON, link
from linkage.match.clustering import balanced_threshold
from linkage.match.link import BALANCED_CEILING
from linkage.match.profile import mask_dominant, profile_columns
from linkage.match.training import deterministic_rules, refine_prior
from linkage.spec import Spec, load_spec, token_columns
from linkage.synthetic import generate_partners
from tests.conftest import EXAMPLE_SPEC

KEY = bytes(range(32))


def test_mask_dominant_masks_every_column_of_the_field_on_those_records_only() -> None:
    full = pa.array([b"h", b"h", b"a", b"b", None, b"c"], pa.binary())
    part = pa.array([b"h3", b"h3", b"a3", b"b3", b"x3", b"c3"], pa.binary())
    other = pa.array([b"1", b"2", b"3", b"4", b"5", b"6"], pa.binary())
    t1 = pa.table({"t_pc_full": full[:3], "t_pc_prefix3": part[:3], "t_x_exact": other[:3]})
    t2 = pa.table({"t_pc_full": full[3:], "t_pc_prefix3": part[3:], "t_x_exact": other[3:]})
    fields = {"pc": ["t_pc_full", "t_pc_prefix3"], "x": ["t_x_exact"]}
    # tiny: "h" holds 2 of the 5 records with a value (40%), but a household could
    (m1, _m2), shares = mask_dominant([t1, t2], fields)
    assert shares == {}
    assert m1.equals(t1)
    # 30 records of 130 in two extracts: over 5% and over 10 per extract
    many = pa.array([b"h"] * 30 + [bytes([i]) for i in range(100)], pa.binary())
    t3 = pa.table({"t_pc_full": many[:70], "t_pc_prefix3": many[:70], "t_x_exact": many[:70]})
    t4 = pa.table({"t_pc_full": many[70:], "t_pc_prefix3": many[70:], "t_x_exact": many[70:]})
    (m3, m4), shares = mask_dominant([t3, t4], {"pc": ["t_pc_full", "t_pc_prefix3"]})
    assert shares == {"pc": pytest.approx(30 / 130)}
    assert m3.column("t_pc_full").null_count == 30
    assert m3.column("t_pc_prefix3").null_count == 30
    assert m4.column("t_pc_full").null_count == 0
    # other records and other fields untouched
    assert m3.column("t_pc_full").to_pylist()[30:] == many.to_pylist()[30:70]
    assert m3.column("t_x_exact").equals(t3.column("t_x_exact"))


def test_no_dominant_value_leaves_tables_alone() -> None:
    values = pa.array([bytes([i]) for i in range(100)], pa.binary())
    table = pa.table({"t_pc_full": values})
    (out,), shares = mask_dominant([table], {"pc": ["t_pc_full"]})
    assert shares == {}
    assert out.equals(table)


def _hashed(tables: dict[str, pa.Table]) -> tuple[dict[str, pa.Table], dict[str, np.ndarray]]:
    encoder = Encoder(load_spec(EXAMPLE_SPEC), KEY)
    hashed, truth = {}, {}
    for n, t in tables.items():
        hashed[n] = encoder.encode(t.drop(["person_id"])).table
        rows = hashed[n].column("row_ref").to_numpy() - 1
        truth[n] = np.asarray(t.column("person_id").to_pylist())[rows]
    return hashed, truth


def test_pairs_within_one_extract_get_their_own_prior() -> None:
    """The same/different-extract comparison is fixed from the data: u from the
    extracts' sizes, m from the deterministic pairs found within extracts."""
    tables = generate_partners(2000, seed=5)
    hashed, _truth = _hashed(tables)
    result = link(hashed, load_spec(EXAMPLE_SPEC))
    (origin,) = [c for c in result.diagnostics["comparisons"] if c["comparison"] == "extract"]
    same, other = origin["levels"]
    sizes = [t.num_rows for t in hashed.values()]
    n = sum(sizes)
    u_same = sum(s * (s - 1) for s in sizes) / (n * (n - 1))
    assert same["u"] == pytest.approx(u_same, abs=1e-5)
    assert same["m"] + other["m"] == pytest.approx(1.0, abs=1e-5)
    share = result.diagnostics["training"]["within_extract_match_share"]
    assert share is not None and 0 < share < 1
    assert same["m"] == pytest.approx(share, abs=0.006)
    # the demo partners hold few duplicates: a pair within an extract is less likely a
    # match than a pair across two, and the model says so
    assert same["m"] / same["u"] < 1 < other["m"] / other["u"]


def test_one_extract_has_no_origin_comparison() -> None:
    tables = generate_partners(1500, seed=6)
    name = sorted(tables)[0]
    hashed, truth = _hashed({name: tables[name]})
    result = link(hashed, load_spec(EXAMPLE_SPEC))
    assert all(c["comparison"] != "extract" for c in result.diagnostics["comparisons"])
    assert result.diagnostics["training"]["within_extract_match_share"] is None
    person = result.records.column(PERSON).to_numpy()
    assert set(result.records.column(PARTNER).to_pylist()) == {name}
    # duplicates still found within the one extract
    assert len(np.unique(person)) < len(person)
    assert len(np.unique(person)) >= len(np.unique(truth[name])) - 5


def test_refine_prior_finds_the_models_own_expected_matches() -> None:
    """The refined prior is a fixed point: the scored pairs' match probabilities under
    it add up to it times the number of pairs."""
    n = 2000
    total = n * (n - 1) / 2
    prior = 1e-4  # 200 matching pairs expected
    # 300 pairs the model is sure of, and 100 it gives even odds under ``prior``
    weights = np.array([30.0] * 300 + [0.0] * 100)
    refined = refine_prior(weights, n, prior, recall=0.9)
    shift = np.log2(refined / (1 - refined)) - np.log2(prior / (1 - prior))
    expected = float(np.sum(1 / (1 + np.exp2(-(weights + shift)))))
    assert refined * total == pytest.approx(expected, rel=1e-4)
    assert 300 < refined * total < 400
    # bounded by what the deterministic rules allow (here at most 180 / 0.3 pairs)
    capped = refine_prior(np.array([30.0] * 5000), n, prior, recall=0.9)
    assert capped * total == pytest.approx(prior * 0.9 / 0.3 * total)
    # nothing to check against: unchanged
    assert refine_prior(weights, n, prior, recall=None) == prior
    assert refine_prior(np.array([]), n, prior, recall=0.9) == prior


def test_linkage_reports_the_refined_prior_and_reuses_it() -> None:
    tables = generate_partners(2000, seed=8)
    hashed, _truth = _hashed(tables)
    spec = load_spec(EXAMPLE_SPEC)
    result = link(hashed, spec)
    training = result.diagnostics["training"]
    assert "refined" in training["prior_method"]
    assert result.model["probability_two_random_records_match"] == pytest.approx(
        training["prior"], rel=0.05
    )
    # the saved model carries the refined prior: predicting with it gives the same people
    # (at a fixed threshold: the balanced one is chosen again from the scored pairs)
    fixed = link(hashed, spec, threshold=0.9)
    again = link(hashed, spec, model=fixed.model, threshold=0.9)
    assert _same_partition(fixed.records.column(PERSON).to_numpy(),
                           again.records.column(PERSON).to_numpy())  # fmt: skip


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_balanced_threshold_equates_expected_false_and_missed_links() -> None:
    # 10 sure pairs, 10 at even odds, 10 at 0.2: linking the sure and all the even
    # ones expects 5 false links and 2 missed matches, linking only the sure ones 0 and
    # 7: the balance falls among the even pairs
    weights = np.array([30.0] * 10 + [0.0] * 10 + [-2.0] * 10)
    t = balanced_threshold(weights, 0.0, 1.0)
    # it links the sure and the even pairs, and sits halfway (weight -1) to the next
    # lower weight rather than on a pair's own (where the last bit would decide)
    assert t == pytest.approx(1 / 3)
    assert int((weights >= np.log2(t / (1 - t))).sum()) == 20
    # the same with weights that differ in their last bits, as two backends' do
    jitter = weights * (1 + np.random.default_rng(1).uniform(-1e-12, 1e-12, len(weights)))
    assert balanced_threshold(jitter, 0.0, 1.0) == pytest.approx(t)
    # never below ``low``, never above ``high``
    assert balanced_threshold(weights, 0.6, 0.9) == 0.6
    assert balanced_threshold(np.array([30.0] * 10), 0.5, 0.9) == 0.9
    assert balanced_threshold(np.array([]), 0.5, 0.9) == 0.9
    # many uncertain pairs at 0.8: their expected misses outweigh their false links,
    # so they are linked
    unsure = np.array([2.0] * 100)  # p = 0.8
    assert 0.5 <= balanced_threshold(unsure, 0.5, 0.9) < 0.8


def test_balanced_linkage_links_at_least_what_the_spec_threshold_links() -> None:
    tables = generate_partners(2000, seed=9)
    hashed, truth = _hashed(tables)
    spec = load_spec(EXAMPLE_SPEC)
    assert spec.matching.threshold == "balanced"  # the default, and the example's
    strict = link(hashed, spec, threshold=0.9)
    balanced = link(hashed, spec, model=strict.model)
    used = balanced.diagnostics["clustering"]["threshold"]
    assert 0.5 <= used <= BALANCED_CEILING
    assert balanced.diagnostics["clustering"]["threshold_method"].startswith("balanced")
    n_strict = len(np.unique(strict.records.column(PERSON).to_numpy()))
    n_balanced = len(np.unique(balanced.records.column(PERSON).to_numpy()))
    assert n_balanced <= n_strict
    # the people it finds are close to the truth
    people = len(np.unique(np.concatenate([truth[p] for p in sorted(truth)])))
    assert abs(n_balanced - people) <= max(abs(n_strict - people), 0.01 * people)


def test_refined_prior_and_recall_tell_the_same_story() -> None:
    """The deterministic rules' pairs over their recall is the expected number of
    matches: when the prior is refined, the reported recall moves with it."""
    tables = generate_partners(2000, seed=10)
    hashed, _truth = _hashed(tables)
    spec = load_spec(EXAMPLE_SPEC)
    result = link(hashed, spec)
    training = result.diagnostics["training"]
    prior = result.model["probability_two_random_records_match"]
    # the rules' pairs, counted here from the tokens (every pair of records, any extract)
    rules = deterministic_rules(spec, profile_columns(hashed.values(), _token_names(spec)))
    frame = pa.concat_tables([t.select(_token_names(spec)) for t in hashed.values()])
    df = frame.to_pandas()
    pairs: set[tuple[int, int]] = set()
    for rule in rules:
        keyed = df[list(rule)].dropna()
        for _key, rows in keyed.groupby(list(rule)).groups.items():
            ids = sorted(int(i) for i in rows)
            pairs.update((a, b) for j, a in enumerate(ids) for b in ids[j + 1 :])
    n = frame.num_rows
    expected = prior * n * (n - 1) / 2
    assert training["deterministic_recall"] == pytest.approx(len(pairs) / expected, abs=0.011)


def _token_names(spec: Spec) -> list[str]:
    return [tc.column for tc in token_columns(spec)]
