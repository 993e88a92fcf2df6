"""The membership probes of issue 12, as data, against the disclosure mechanism alone.

A partner holds the hashing secret, so it can submit the one person it wants to ask
about (the target) padded with made-up people; an analyst chooses parameters and how
often to run. Each probe compares two worlds: A, the target is known to the police; B,
it is not. Before the perturbation the two worlds released different figures every
time (``*`` vs ``0``, 595 vs 600). Now, over many enclave secrets, the release
distributions must be as close as the mechanism states: for every figure, a likelihood
ratio of at most exp(epsilon) per person of difference, except with probability delta,
and the figures together no further apart than the sum of their distances.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable

import numpy as np
import pyarrow as pa
import pytest

from linkage.disclose import Release, apply_primary, disclose
from linkage.match import PARTNER, PERSON
from linkage.perturb import ptable
from linkage.spec import DisclosurePolicy, Spec
from linkage.stats import Figures, compute_figures

NHS = DisclosurePolicy()
ROUND5 = DisclosurePolicy(style="threshold", suppress_below=10, round_to=5)
TARGET = 999_999
SAMPLES = 300


def _row(partner: str, person: int, contacts: int = 3, band: str = "25-34") -> dict[str, object]:
    return {PARTNER: partner, PERSON: person, "a_age_band": band, "a_area": "LS2",
            "a_contacts": contacts, "a_need": "offending"}  # fmt: skip


def _world(target_known_to_police: bool, fillers: int, *, with_target: bool = True) -> pa.Table:
    """Police and social care hold real people; the curious partner (housing) submits
    ``fillers`` made-up people (nobody else knows them) and, if ``with_target``, the
    target. In world A the police also hold the target."""
    rng = np.random.default_rng(7)
    rows = []
    for person in range(300):
        rows.append(
            _row("police", person, int(rng.poisson(4)), str(rng.choice(["18-24", "25-34"])))
        )
        if person % 3 == 0:
            rows.append(_row("social_care", person, int(rng.poisson(3))))
    for person in range(300, 400):
        rows.append(_row("social_care", person, int(rng.poisson(3))))
    rows += [_row("housing", 10_000 + i) for i in range(fillers)]
    if with_target:
        rows.append(_row("housing", TARGET, 12))
    if target_known_to_police:
        rows.append(_row("police", TARGET, 12))
    return pa.Table.from_pylist(rows)


def _releases(
    fig: Figures, policy: DisclosurePolicy, names: list[str], tag: bytes = b""
) -> list[tuple[int | float | None, ...]]:
    out = []
    for i in range(SAMPLES):
        secret = tag + i.to_bytes(4, "big") * 8
        release = disclose(fig, policy, cell_key_secret=secret)
        out.append(tuple(release.figures[n] for n in names))
    return out


def _tv(a: Iterable[Hashable], b: Iterable[Hashable]) -> float:
    ca, cb = Counter(a), Counter(b)
    na, nb = sum(ca.values()), sum(cb.values())
    return 0.5 * sum(abs(ca[k] / na - cb[k] / nb) for k in set(ca) | set(cb))


def _distribution(value: int, policy: DisclosurePolicy) -> dict[int | None, float]:
    """Exact distribution of one count's released value under the policy's ptable."""
    table = ptable(policy.cell_key.epsilon, policy.cell_key.max_perturbation)
    out: dict[int | None, float] = {}
    for noise, p in zip(table.values.tolist(), table.probabilities.tolist(), strict=True):
        released = apply_primary(max(value + noise, 0), policy)
        out[released] = out.get(released, 0.0) + p
    return out


def _analytic(a: int, b: int, policy: DisclosurePolicy) -> tuple[float, float]:
    """(total variation, hockey-stick divergence at exp(epsilon * |a - b|)) between the
    released distributions of values a and b: the divergence is the delta of an
    (epsilon, delta) guarantee, the most any event's probability exceeds exp(epsilon)
    times its probability in the other world, taken both ways."""
    pa_, pb = _distribution(a, policy), _distribution(b, policy)
    keys = set(pa_) | set(pb)
    tv = 0.5 * sum(abs(pa_.get(k, 0.0) - pb.get(k, 0.0)) for k in keys)
    factor = math.exp(policy.cell_key.epsilon * abs(a - b))
    hockey = max(
        sum(max(0.0, x.get(k, 0.0) - factor * y.get(k, 0.0)) for k in keys)
        for x, y in ((pa_, pb), (pb, pa_))
    )
    return tv, hockey


def _slack() -> float:
    # the sampling error of an empirical total variation over a handful of outcomes
    return 4 / math.sqrt(SAMPLES)


def _check_worlds(spec: Spec, policy: DisclosurePolicy, fillers: int) -> dict[str, float]:
    fig_a = compute_figures(_world(True, fillers), spec)
    fig_b = compute_figures(_world(False, fillers), spec)
    names = sorted(
        n
        for n in fig_a.counts
        if n not in fig_a.virtual and fig_a.counts[n] != fig_b.counts.get(n, 0)
    )
    assert names, "the two worlds must differ somewhere"
    eps = policy.cell_key.epsilon
    _, delta = ptable(eps, policy.cell_key.max_perturbation).bound()
    rel_a, rel_b = _releases(fig_a, policy, names), _releases(fig_b, policy, names)
    summed = 0.0
    tvs = {}
    for i, name in enumerate(names):
        a, b = fig_a.counts[name], fig_b.counts[name]
        tv, hockey = _analytic(a, b, policy)
        gap = abs(a - b)
        # (gap * epsilon, gap * exp(gap * epsilon) * delta): the stated guarantee, for a
        # difference of gap people (group privacy)
        assert hockey <= gap * math.exp(gap * eps) * delta + 1e-12, (name, a, b, hockey)
        assert tv <= math.tanh(gap * eps / 2) + gap * math.exp(gap * eps) * delta + 1e-9
        empirical = _tv([r[i] for r in rel_a], [r[i] for r in rel_b])
        assert empirical <= tv + _slack(), (name, a, b, empirical, tv)
        tvs[name] = empirical
        summed += tv
    joint = _tv(rel_a, rel_b)
    assert joint <= summed + _slack(), (joint, summed)
    tvs["joint"] = joint
    print(f"\n{len(names)} figures differ; largest per-figure distance "
          f"{max(v for k, v in tvs.items() if k != 'joint'):.3f}; all together {joint:.3f}")  # fmt: skip
    return tvs


def test_probe_one_target_zero_vs_star(spec: Spec) -> None:
    """Attack 1: the target alone (here with the minimum of 50 fillers a project now
    requires) and ``persons.both.housing+police`` read as ``*`` vs ``0``."""
    fig_a = compute_figures(_world(True, 49), spec)
    fig_b = compute_figures(_world(False, 49), spec)
    name = "persons.both.housing+police"
    assert (fig_a.counts[name], fig_b.counts[name]) == (1, 0)
    # before: deterministic, 1 -> suppressed, 0 -> 0 (the NHS rule's zero)
    tvs = _check_worlds(spec, NHS, 49)
    assert tvs[name] < 0.05  # zero and one release the same (suppressed) almost always


def test_probe_two_fillers_parked_on_a_rounding_boundary(spec: Spec) -> None:
    """Attack 2: fillers chosen so the figure the target moves sits on a rounding edge:
    without noise 45 in one world and 50 in the other, every time."""
    fillers = 47  # only.housing: 47 (A, the target links to police) vs 48 (B)
    fig_a = compute_figures(_world(True, fillers), spec)
    fig_b = compute_figures(_world(False, fillers), spec)
    name = "persons.only.housing"
    a, b = fig_a.counts[name], fig_b.counts[name]
    assert apply_primary(a, ROUND5) != apply_primary(b, ROUND5)  # the old leak, exactly
    tvs = _check_worlds(spec, ROUND5, fillers)
    # one person's difference moves this figure by at most tanh(epsilon/2) + delta
    assert tvs[name] <= math.tanh(ROUND5.cell_key.epsilon / 2) + _slack()


@pytest.mark.parametrize("value", [1, 2, 3, 5])
def test_zero_is_not_told_from_a_small_count(value: int) -> None:
    tv, hockey = _analytic(0, value, NHS)
    _, delta = ptable(NHS.cell_key.epsilon, NHS.cell_key.max_perturbation).bound()
    assert hockey <= value * math.exp(value * NHS.cell_key.epsilon) * delta
    # a small cell and an empty one are both suppressed nearly always
    assert _distribution(0, NHS)[None] > 0.98
    assert tv <= {1: 0.01, 2: 0.02, 3: 0.04, 5: 0.15}[value]


def test_change_detection_across_runs_sees_nothing(spec: Spec) -> None:
    """Run once without the target, then with it, and look at which figures changed.
    Noise keyed on each cell's people alone would leave a cell the target is not in
    unchanged (world B) and redraw it when the target is in it (world A)."""
    name = "persons.at_least_2"  # 100 people known to police and social care (+ target in A)
    same: dict[bool, int] = {}
    for known in (True, False):
        before = compute_figures(_world(known, 50, with_target=False), spec)
        after = compute_figures(_world(known, 50, with_target=True), spec)
        assert before.counts[name] >= 100
        same[known] = sum(
            disclose(before, ROUND5, cell_key_secret=s).figures[name]
            == disclose(after, ROUND5, cell_key_secret=s).figures[name]
            for s in (i.to_bytes(4, "big") * 8 for i in range(SAMPLES // 2))
        )
    share = {k: v / (SAMPLES // 2) for k, v in same.items()}
    assert share[False] < 0.7  # world B does not give "unchanged" every time
    assert abs(share[True] - share[False]) <= 0.15, share


def test_an_analyst_stepping_a_threshold_sees_nothing(spec: Spec) -> None:
    """Attack 3: step the frequent-user threshold and watch whether a figure changes.
    The target (12 contacts) leaves the frequent cohort between 12 and 13 only in A;
    with the run's parameters in the noise key, both worlds redraw everything."""
    name = "frequent.partner.police"
    same: dict[bool, int] = {}
    for known in (True, False):
        records = _world(known, 50)
        at12 = compute_figures(records, spec, frequent_threshold=12)
        at13 = compute_figures(records, spec, frequent_threshold=13)
        same[known] = 0
        for i in range(SAMPLES // 2):
            secret = i.to_bytes(4, "big") * 8
            one = disclose(at12, ROUND5, cell_key_secret=secret, parameters={"frequent": 12})
            two = disclose(at13, ROUND5, cell_key_secret=secret, parameters={"frequent": 13})
            same[known] += one.figures[name] == two.figures[name]
    share = {k: v / (SAMPLES // 2) for k, v in same.items()}
    assert abs(share[True] - share[False]) <= 0.15, share


def test_repeating_a_run_gives_nothing_to_average(spec: Spec) -> None:
    fig = compute_figures(_world(True, 50), spec)
    releases = {
        tuple(sorted(disclose(fig, NHS, cell_key_secret=b"k" * 32).figures.items(), key=str))
        for _ in range(20)
    }
    assert len(releases) == 1


def _pick(release: Release, names: list[str]) -> tuple[int | float | None, ...]:
    # a figure of an undeclared area or partner combination is named only when its own
    # noisy count clears suppression (linkage.figure_names): unnamed is one of the values
    # a release can take for it, compared like any other (None)
    return tuple(release.figures.get(n) for n in names)


def test_differential_privacy_mode_holds_the_whole_release(spec: Spec) -> None:
    policy = DisclosurePolicy.model_validate(
        {"dp": {"epsilon_per_release": 1.0, "epsilon_budget": 10.0}, "round_to": 5}
    )
    fig_a = compute_figures(_world(True, 47), spec)
    fig_b = compute_figures(_world(False, 47), spec)
    names = sorted(n for n in fig_a.counts if n not in fig_a.virtual)
    # one release per sample, every figure read from it (a generator inside tuple() would
    # draw a fresh release per figure: len(names) times the work, and not one release)
    rel_a = [_pick(disclose(fig_a, policy), names) for _ in range(200)]
    rel_b = [_pick(disclose(fig_b, policy), names) for _ in range(200)]
    # epsilon-DP for the whole release: per-figure distance at most tanh(epsilon/2)
    for i, _name in enumerate(names):
        assert _tv([r[i] for r in rel_a], [r[i] for r in rel_b]) <= math.tanh(0.5) + 4 / math.sqrt(
            200
        )
