"""Disclosure control: the primary rules, and automated attempts to recover a suppressed
count from released figures (totals minus cells, complementary cohorts, the difference of
two runs one record apart). Every attack must fail."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linkage.disclose import Release, apply_primary, disclose
from linkage.errors import DisclosureError
from linkage.match import PARTNER, PERSON
from linkage.spec import DisclosurePolicy, Spec
from linkage.stats import Figures, compute_figures

NHS = DisclosurePolicy()
EXACT = DisclosurePolicy(style="threshold", suppress_below=10, round_to=1)


@pytest.mark.parametrize(
    ("value", "nhs", "threshold"),
    [
        (0, 0, None),
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


def _released_known(fig: Figures, release: Release) -> dict[str, int]:
    return {n: int(v) for n, v in release.figures.items() if v is not None and n in fig.counts}


def _derivable_hidden(fig: Figures, release: Release, k: int) -> list[str]:
    """Cells an attacker can compute exactly as total minus the other (released) cells."""
    known = _released_known(fig, release)
    found = []
    for relation in fig.relations:
        if relation.total not in known:
            continue
        unknown = [c for c in relation.cells if c not in known]
        if len(unknown) == 1:
            value = fig.counts[unknown[0]]
            if 0 < value < k:
                found.append(unknown[0])
    return found


@pytest.mark.parametrize("policy", [NHS, EXACT], ids=["nhs", "threshold-exact"])
def test_totals_minus_visible_cells_recover_nothing(spec: Spec, policy: DisclosurePolicy) -> None:
    fig = compute_figures(records(1), spec)
    release = disclose(fig, policy)
    small = [
        n for n, v in fig.counts.items() if 0 < v < policy.suppress_below and n not in fig.virtual
    ]
    assert small, "the fixture must contain small cells for the attack to mean anything"
    assert all(release.figures[n] is None for n in small)
    assert _derivable_hidden(fig, release, policy.suppress_below) == []


def test_complementary_cohorts_recover_nothing(spec: Spec) -> None:
    fig = compute_figures(records(2), spec)
    release = disclose(fig, EXACT)
    known = _released_known(fig, release)
    leaks = []
    for name in fig.counts:
        for sub in ("frequent.", "multi."):
            if not name.startswith(sub):
                continue
            parent = "persons." + name[len(sub) :]
            if name in known and parent in known:
                difference = known[parent] - known[name]
                if 0 < difference < EXACT.suppress_below:
                    leaks.append((parent, name, difference))
    assert leaks == []


@settings(max_examples=15, deadline=None)
@given(
    st.integers(0, 10_000),
    st.sampled_from(["housing", "police", "social_care"]),
    st.sampled_from(["18-24", "85+"]),
    st.sampled_from(["LS1", "LS9"]),
)
def test_two_runs_one_record_apart_release_the_same_figures(
    spec_for_hypothesis: Spec, seed: int, partner: str, band: str, area: str
) -> None:
    spec = spec_for_hypothesis
    base = records(seed, people=200)
    newcomer = {
        PARTNER: partner,
        PERSON: 10_000,
        "a_age_band": band,
        "a_area": area,
        "a_contacts": 30,
        "a_need": "offending",
    }
    for policy in (NHS, EXACT):
        first = disclose(compute_figures(base, spec), policy)
        second = disclose(
            compute_figures(records(seed, people=200, extra=[newcomer]), spec),
            policy,
            anchors=first.anchors,
        )
        changed = {
            n: (a, second.figures.get(n))
            for n, a in first.figures.items()
            if not n.endswith("mean_contacts")
            and a is not None
            and second.figures.get(n) is not None
            and second.figures[n] != a
        }
        assert not changed, changed
        # an attacker holding both releases: run-2 totals minus cells, with run-1 values
        # filling in what run 2 hides, recovers no small hidden cell of run 2
        fig2 = compute_figures(records(seed, people=200, extra=[newcomer]), spec)
        known = {n: v for n, v in first.figures.items() if v is not None and n in fig2.counts}
        known.update(
            {n: v for n, v in second.figures.items() if v is not None and n in fig2.counts}
        )
        if policy.round_to == 1:
            for relation in fig2.relations:
                unknown = [c for c in relation.cells if c not in known]
                if (
                    relation.total in known
                    and len(unknown) == 1
                    and second.figures.get(unknown[0]) is None
                ):
                    derived = known[relation.total] - sum(
                        int(known[c]) for c in relation.cells if c in known
                    )
                    exact = fig2.counts[unknown[0]]
                    assert not (derived == exact and 0 < exact < policy.suppress_below), (
                        relation,
                        exact,
                    )


def test_means_need_enough_people(spec: Spec) -> None:
    fig = compute_figures(records(3), spec)
    release = disclose(fig, NHS)
    for name, value in release.figures.items():
        if name.endswith("mean_contacts") and value is not None:
            assert fig.counts[fig.mean_n[name]] >= NHS.min_n_for_mean


def test_differential_privacy_draws_down_the_budget(spec: Spec) -> None:
    dp = DisclosurePolicy.model_validate(
        {"dp": {"epsilon_per_release": 1.0, "epsilon_budget": 2.0}}
    )
    fig = compute_figures(records(4), spec)
    release = disclose(fig, dp, epsilon_left=2.0)
    assert release.epsilon_spent == 1.0
    exact = disclose(fig, NHS)
    assert release.figures != exact.figures  # noise moved something
    with pytest.raises(DisclosureError, match="budget is spent"):
        disclose(fig, dp, epsilon_left=0.5)


@pytest.fixture(scope="session")
def spec_for_hypothesis(spec: Spec) -> Spec:
    return spec
