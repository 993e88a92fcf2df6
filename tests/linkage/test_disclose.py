"""Disclosure control: the perturbation, the primary rules, secondary suppression, means,
differential privacy, and automated attempts to recover a suppressed count from the
released figures (totals minus cells, complementary cohorts). Every attack must fail.
The attacks of issue 12 (membership probes) are in test_disclosure_attacks.py."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linkage.disclose import Release, apply_primary, disclose
from linkage.errors import DisclosureError
from linkage.match import PARTNER, PERSON
from linkage.perturb import ptable
from linkage.spec import DisclosurePolicy, Spec, parse_spec
from linkage.stats import Figures, Relation, compute_figures

NHS = DisclosurePolicy()
EXACT = DisclosurePolicy(style="threshold", suppress_below=10, round_to=1)
SECRET = b"s" * 32


@pytest.mark.parametrize(
    ("value", "nhs", "threshold"),
    [
        (0, None, None),  # zero and small counts release the same thing
        (1, None, None),
        (7, None, None),
        (8, 10, None),
        (9, 10, None),
        (10, 10, 10),
        (12, 10, 12),
        (13, 15, 13),
        (1002, 1000, 1002),
    ],
)
def test_primary_rules(value: int, nhs: int | None, threshold: int | None) -> None:
    assert apply_primary(value, NHS) == nhs
    assert apply_primary(value, EXACT) == threshold


def records(seed: int, people: int = 400, extra: list[dict[str, object]] | None = None) -> pa.Table:
    rng = np.random.default_rng(seed)
    partners = np.array(["housing", "police", "social_care"])
    rows: list[dict[str, object]] = []
    for person in range(people):
        seen = [p for p in partners if rng.random() < 0.45] or [str(rng.choice(partners))]
        for p in seen:
            rows.append(
                {
                    PARTNER: p,
                    PERSON: person,
                    "a_age_band": str(rng.choice(["18-24", "25-34", "85+"], p=[0.5, 0.48, 0.02])),
                    "a_area": str(rng.choice(["LS1", "LS2", "LS9"], p=[0.6, 0.38, 0.02])),
                    "a_contacts": int(rng.poisson(6)),
                    "a_need": str(rng.choice(["housing", "offending"])),
                }
            )
    rows += extra or []
    return pa.Table.from_pylist(rows)


# -- the ptable ------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(st.floats(0.1, 3.0), st.integers(1, 30), st.integers(1, 60))
def test_ptable_is_bounded_centred_and_meets_its_stated_bound(
    epsilon: float, reach: int, sensitivity: int
) -> None:
    table = ptable(epsilon, reach, sensitivity)
    p = table.probabilities
    assert math.isclose(float(p.sum()), 1.0, rel_tol=1e-12)
    assert -table.values.min() == table.values.max() <= reach * sensitivity
    assert abs(float(np.sum(p * table.values))) < 1e-9 * sensitivity  # unbiased
    eps, delta = table.bound()
    assert epsilon - 1e-6 <= eps <= epsilon + 1e-3  # as realised, quantisation included
    # the cut-off's tail as the policy states it, about exp(-epsilon * D) (values rarer
    # than 2**-40 are cut off too)
    assert delta <= math.exp(-epsilon * (reach - 1)) + sensitivity * math.exp(epsilon) * 2.0**-39


def test_ptable_noise_follows_its_probabilities() -> None:
    table = ptable(0.5, 10)
    rng = np.random.default_rng(1)
    draws = np.array(
        [table.noise(int(k)) for k in rng.integers(0, 2**63, 20_000, dtype=np.int64) * 2]
    )
    freq = np.array([(draws == v).mean() for v in table.values])
    assert np.abs(freq - table.probabilities).max() < 0.01
    assert abs(draws.var() - table.variance) < 0.3


# -- the release -----------------------------------------------------------------------


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.binary(min_size=16, max_size=32))
def test_perturbation_is_bounded_and_consistent(spec: Spec, seed: int, secret: bytes) -> None:
    fig = compute_figures(records(seed, people=150), spec)
    reach = NHS.cell_key.max_perturbation
    first = disclose(fig, NHS, cell_key_secret=secret)
    again = disclose(fig, NHS, cell_key_secret=secret)
    assert first.figures == again.figures  # same data, same secret: nothing to average
    for name, value in first.figures.items():
        if value is None or name.endswith("mean_contacts"):
            continue
        assert abs(value - fig.counts[name]) <= reach + NHS.round_to / 2, name
        assert value % NHS.round_to == 0 and value >= NHS.suppress_below
    for name, value in first.figures.items():
        if name.endswith("mean_contacts") and value is not None:
            assert 0 <= value <= NHS.contacts_bound


def test_noise_is_fresh_when_anything_changes(spec: Spec) -> None:
    fig = compute_figures(records(5), spec)
    base = disclose(fig, EXACT, cell_key_secret=SECRET)
    others = [
        disclose(fig, EXACT, cell_key_secret=b"t" * 32),
        disclose(fig, EXACT, cell_key_secret=SECRET, parameters={"frequent_threshold": 12}),
        disclose(fig, EXACT, cell_key_secret=SECRET, inputs=["sha256:other"]),
    ]
    # cells suppressed in both (small cells of the two-way tables, mostly) say nothing
    # about the noise: compare the ones released
    shown = [n for n in fig.counts if n not in fig.virtual and base.figures[n] is not None]
    assert len(shown) > 50
    for other in others:
        same = sum(base.figures[n] == other.figures[n] for n in shown)
        assert same < 0.6 * len(shown), same  # independent draws, not a copy


def test_same_people_same_noise_within_a_release(spec: Spec) -> None:
    fig = compute_figures(records(6), spec)
    assert fig.populations["multi.total"] == fig.populations["persons.at_least_2"]
    for secret in (b"a" * 32, b"b" * 32, b"c" * 32):
        release = disclose(fig, EXACT, cell_key_secret=secret)
        assert release.figures["multi.total"] == release.figures["persons.at_least_2"]


def _released_known(fig: Figures, release: Release) -> dict[str, int]:
    return {n: int(v) for n, v in release.figures.items() if v is not None and n in fig.counts}


def _lone_unknown(fig: Figures, release: Release, public: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
    """Cells that are the one unknown of a relation whose total is known: a difference
    of released (or earlier public) figures."""
    known = set(_released_known(fig, release)) | public
    found = []
    for relation in fig.relations:
        if relation.total not in known:
            continue
        unknown = [c for c in relation.cells if c not in known]
        if len(unknown) == 1:
            found.append(unknown[0])
    return found


def _lone_hidden(fig: Figures, release: Release, public: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
    """Suppressed released figures that are a difference of released ones."""
    return [c for c in _lone_unknown(fig, release, public) if c not in fig.virtual]


@pytest.mark.parametrize("policy", [NHS, EXACT], ids=["nhs", "threshold-exact"])
def test_totals_minus_visible_cells_recover_nothing(spec: Spec, policy: DisclosurePolicy) -> None:
    small_virtual = derivable_small_virtual = tiny = 0
    for seed in range(1, 7):
        fig = compute_figures(records(seed), spec)
        release = disclose(fig, policy, cell_key_secret=bytes([seed]) * 32)
        small = [n for n, v in fig.counts.items() if 0 < v < 3 and n not in fig.virtual]
        tiny += len(small)
        assert all(release.figures.get(n) is None for n in small)  # None, or left out
        assert _lone_hidden(fig, release) == []
        # an unreleased complement (e.g. the non-frequent people known to two partners)
        # is blocked when its perturbed value is small; one whose noise lifted it above
        # the threshold may be a difference of two released figures, each with its own
        # noise: rare, and never exact
        lone = set(_lone_unknown(fig, release))
        for name in fig.virtual:
            if 0 < fig.counts[name] < policy.suppress_below:
                small_virtual += 1
                derivable_small_virtual += name in lone
    assert tiny > 5, "the fixture must contain small cells for the attack to mean anything"
    assert small_virtual > 20
    assert derivable_small_virtual <= 0.1 * small_virtual


def _triple() -> Figures:
    # total 100 = a 52 + b 45 + x 3: x is suppressed, and one more cell must join it
    return Figures(
        counts={"t": 100, "a": 52, "b": 45, "x": 3}, relations=[Relation("t", ("a", "b", "x"))]
    )


def test_secondary_suppression_never_hides_a_cell_already_public() -> None:
    fig, params = _triple(), {"frequent_threshold": 10}
    # an earlier release under the same parameters published b
    anchors = disclose(Figures(counts={"b": 45}), EXACT, parameters=params).anchors
    picked_b_without = trials = 0
    for i in range(200):
        secret = i.to_bytes(4, "big") * 8
        fresh = disclose(fig, EXACT, cell_key_secret=secret, parameters=params)
        later = disclose(fig, EXACT, cell_key_secret=secret, parameters=params, anchors=anchors)
        if later.figures["x"] is not None:
            continue
        trials += 1
        picked_b_without += fresh.figures["b"] is None
        assert later.figures["b"] is not None, "a public cell was chosen for suppression"
        assert later.figures["a"] is None or later.figures["t"] is None
        assert _lone_hidden(fig, later, {"b"}) == []
    assert trials > 150
    assert picked_b_without > trials / 2  # without the anchors b (the smallest) is the pick


def test_public_cells_are_keyed_by_parameters() -> None:
    anchors = disclose(Figures(counts={"b": 45}), EXACT, parameters={"f": 10}).anchors
    # under other parameters the same name is another cohort: not public yet, so b (the
    # smallest other cell) is the one that joins x whenever it is the smallest
    joined = [
        disclose(
            _triple(), EXACT, cell_key_secret=bytes([i]) * 32, parameters={"f": 11}, anchors=anchors
        ).figures["b"]
        is None  # fmt: skip
        for i in range(50)
    ]
    assert sum(joined) > 25


def test_old_anchors_are_ignored(spec: Spec) -> None:
    fig = compute_figures(records(7), spec)
    old = {"persons.total": (400, 400)}
    assert (
        disclose(fig, NHS, cell_key_secret=SECRET, anchors=old).figures
        == disclose(fig, NHS, cell_key_secret=SECRET).figures
    )


def test_means_need_enough_people_and_come_from_perturbed_sums(spec: Spec) -> None:
    fig = compute_figures(records(3), spec)
    differ = 0
    for i in range(5):
        release = disclose(fig, NHS, cell_key_secret=bytes([i]) * 32)
        for name, value in release.figures.items():
            if not name.endswith("mean_contacts") or value is None:
                continue
            count = fig.mean_n[name]
            assert release.figures[count] is not None
            # gated on the perturbed count: at most the cut-off below the threshold
            assert fig.counts[count] >= NHS.min_n_for_mean - NHS.cell_key.max_perturbation
            differ += value != round(fig.means[name], 1)
    assert differ > 0  # means are not the exact means


def test_pair_diagnostics_are_withheld(spec: Spec) -> None:
    fig = compute_figures(records(4), spec)
    histogram = [{"from": 0, "to": 5, "pairs": 1234}]
    comparisons = [{"comparison": "nhs", "levels": [{"level": "exact", "m": 0.9, "u": 0.001}]}]
    for policy in (NHS, _dp(1.0)):
        release = disclose(fig, policy, cell_key_secret=SECRET, histogram=histogram,
                           comparisons=comparisons)  # fmt: skip
        assert release.histogram == [] and release.comparisons == []


def _dp(epsilon: float) -> DisclosurePolicy:
    return DisclosurePolicy.model_validate(
        {"dp": {"epsilon_per_release": epsilon, "epsilon_budget": 2 * epsilon}}
    )


def test_differential_privacy_draws_down_the_budget(spec: Spec) -> None:
    dp = _dp(1.0)
    fig = compute_figures(records(4), spec)
    release = disclose(fig, dp, epsilon_left=2.0)
    assert release.epsilon_spent == 1.0
    assert release.guarantee["mechanism"] == "differential_privacy"
    with pytest.raises(DisclosureError, match="budget is spent"):
        disclose(fig, dp, epsilon_left=0.5)


def test_differential_privacy_noises_means_and_gates_them_on_the_noised_count() -> None:
    # one cohort of 9 people (below min_n_for_mean = 10) with known contacts: an exact
    # gate would never show its mean; a noised one sometimes does, and the mean shown is
    # the noised sum over the noised count, not the exact mean
    contacts = {3: 4, 5: 5}  # 9 people, mean 4.11
    fig = Figures(
        counts={"c": 9, "t": 40, "o": 31},
        means={"m": 37 / 9},
        mean_n={"m": "c"},
        relations=[Relation("t", ("c", "o"))],
        contacts={"m": contacts},
        attributes=["x"],
    )
    policy = DisclosurePolicy.model_validate(
        {
            "dp": {"epsilon_per_release": 10.0, "epsilon_budget": 100.0},
            "suppress_below": 1,
            "round_to": 1,
            "contacts_bound": 10,
        }  # fmt: skip
    )
    shown = [disclose(fig, policy).figures["m"] for _ in range(300)]
    values = [v for v in shown if v is not None]
    assert 0 < len(values) < 300
    assert any(v != round(37 / 9, 1) for v in values)


def test_dp_sensitivity_covers_everything_one_person_changes(spec: Spec) -> None:
    base = records(8, people=120)
    fig = compute_figures(base, spec, frequent_threshold=8)
    worst_counts = worst_means = 0
    people = sorted(set(base.column(PERSON).to_pylist()))
    for person in people[:40]:
        without = base.filter(pa.compute.not_equal(base.column(PERSON), person))
        other = compute_figures(without, spec, frequent_threshold=8)
        changed = [n for n in fig.counts if fig.counts[n] != other.counts.get(n, 0)]
        moved = [m for m in fig.means if other.means.get(m) != fig.means[m]]
        worst_counts, worst_means = max(worst_counts, len(changed)), max(worst_means, len(moved))
    assert worst_counts <= fig.cells_per_person()
    assert worst_means <= fig.means_per_person()
    assert worst_counts >= fig.cells_per_person() - 12  # the bound is not wildly loose


def test_what_leaves_the_enclave_is_plain_json_of_aggregates(spec: Spec) -> None:
    import json

    fig = compute_figures(records(9), spec)
    for policy in (NHS, _dp(1.0)):
        release = disclose(fig, policy, cell_key_secret=SECRET, parameters={"f": 10})
        text = json.dumps(
            {
                "figures": release.figures,
                "guarantee": release.guarantee,
                "anchors": release.anchors,
                "reasons": release.suppressed_reason,
            }  # fmt: skip
        )
        # the anchors name figures and a parameters tag, never a value or a key
        assert all(p.count("|") == 1 for p in release.anchors["public"])
        assert "person" not in json.dumps(release.guarantee).replace("_per_person", "")
        assert json.loads(text)["guarantee"]["counts_per_person"] == fig.cells_per_person()


# -- two-way tables ----------------------------------------------------------------------


def _lines(fig: Figures, cohort: str) -> list[tuple[str, list[str]]]:
    """(margin, cells) of every row and column of the cohort's two-way tables."""
    prefix = f"{cohort}.cross."
    return [(r.total, list(r.cells)) for r in fig.relations
            if r.total.startswith(f"{cohort}.by.") and r.cells[0].startswith(prefix)]  # fmt: skip


def test_two_way_cells_add_up_to_their_one_way_margins(spec: Spec) -> None:
    fig = compute_figures(records(3), spec)
    assert fig.crosses == [("age_band", "need"), ("area", "need")]
    for cohort in ("persons", "multi", "frequent"):
        lines = _lines(fig, cohort)
        # rows: 9 age bands + 'unknown', 3 areas seen + 'unknown'; columns: 8 needs +
        # 'unknown', once per table
        assert len(lines) == (10 + 9) + (4 + 9)
        for margin, cells in lines:
            assert sum(fig.counts[c] for c in cells) == fig.counts[margin]
    # the complements (not frequent, known to one partner) are never released
    assert all(n in fig.virtual for n in fig.counts if n.startswith(("nonfrequent.cross.",
                                                                     "single.cross.")))  # fmt: skip


def _small_spec(spec: Spec) -> Spec:
    """The example spec with two age bands and two needs: every row and column of its
    two-way tables is short, so a lone small cell needs a second one hidden."""
    data = spec.model_dump(mode="json", exclude_none=True)
    for attr in data["attributes"]:
        if attr["kind"] == "age_band":
            attr["bands"] = [0, 40]
        if attr["kind"] == "category":
            attr["values"] = ["a", "b"]
    return parse_spec(data)


def _grid(seed: int) -> pa.Table:
    """About 40 people in every (age band, area, need) cell, unknowns included, except
    3 people aged 40+ with need b (one per area)."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, object]] = []
    person = 0
    for band in ("0-39", "40+", None):
        for area in ("LS1", "LS2", None):
            for need in ("a", "b", None):
                n = 1 if (band, need) == ("40+", "b") else int(rng.integers(30, 50))
                for _ in range(n):
                    for p in [p for p in ("housing", "police") if rng.random() < 0.6] or ["police"]:
                        rows.append({PARTNER: p, PERSON: person, "a_age_band": band, "a_area": area,
                                     "a_contacts": int(rng.poisson(6)), "a_need": need})  # fmt: skip
                    person += 1
    return pa.Table.from_pylist(rows)


@pytest.mark.parametrize("policy", [NHS, EXACT], ids=["nhs", "threshold-exact"])
def test_no_suppressed_two_way_cell_is_its_row_or_column_total_minus_the_rest(
    spec: Spec, policy: DisclosurePolicy
) -> None:
    small = _small_spec(spec)
    primary = secondary = 0
    for seed in range(1, 9):
        fig = compute_figures(_grid(seed), small)
        release = disclose(fig, policy, cell_key_secret=bytes([seed]) * 32)
        shown = release.figures
        assert _lone_hidden(fig, release) == []
        for cohort in ("persons", "multi", "frequent"):
            for margin, cells in _lines(fig, cohort):
                hidden = [c for c in cells if shown[c] is None]
                if shown[margin] is not None:
                    assert len(hidden) != 1, (margin, hidden)
                for c in hidden:
                    reason = release.suppressed_reason[c]
                    primary += reason == "primary"
                    secondary += reason == "secondary"
        lone = "persons.cross.age_band.40+.need.b.count"
        if shown[lone] is None:  # the small cell; its row and column each hide another
            assert release.suppressed_reason[lone] == "primary"
    assert primary > 8 and secondary > 8
