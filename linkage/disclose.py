"""Statistical disclosure control: what of the exact figures may be released.

Applied to every count, in this order:

1. optional differential privacy: discrete Laplace noise (OpenDP) calibrated to the
   figures one person can change, drawing ``epsilon_per_release`` from the project's
   budget (the caller refuses a release once the budget is spent);
2. primary rule: NHS style (0 stays 0, 1..k-1 suppressed, the rest rounded to the nearest
   ``round_to``) or threshold style (below k suppressed, the rest rounded);
3. run-to-run stability: a figure whose exact value moved by fewer than k since the
   release it was last anchored to is released exactly as then, so differencing two runs
   one record apart shows nothing;
4. secondary suppression: for every additive relation (a total and its cells, including
   unreleased complementary cohorts), a lone suppressed cell is joined by the next
   smallest cell (or the total is suppressed), so no suppressed cell is the difference
   of released figures;
5. means only where their count is released and rests on at least ``min_n_for_mean``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from linkage.errors import DisclosureError
from linkage.spec import DisclosurePolicy
from linkage.stats import Figures

__all__ = ["Release", "apply_primary", "disclose"]

#: figure -> [exact value it was anchored at, value released then (None = suppressed)]
Anchors = Mapping[str, tuple[int, int | None]]


@dataclass
class Release:
    """The released figures (None = suppressed) and the enclave's private bookkeeping."""

    figures: dict[str, int | float | None]
    suppressed: list[str]
    anchors: dict[str, tuple[int, int | None]] = field(default_factory=dict)
    epsilon_spent: float = 0.0
    histogram: list[dict[str, Any]] = field(default_factory=list)


def _round(value: int, to: int) -> int:
    return int((value + to / 2) // to * to) if to > 1 else value


def apply_primary(value: int, policy: DisclosurePolicy) -> int | None:
    """The released form of one count under the primary rule (None = suppressed)."""
    k = policy.suppress_below
    if policy.style == "nhs":
        if value == 0:
            return 0
        if value < k:
            return None
    elif value < k:
        return None
    return _round(value, policy.round_to)


def _sensitive(value: int, policy: DisclosurePolicy) -> bool:
    """Whether an unreleased (virtual) cell must not be derivable."""
    return 0 < value < policy.suppress_below


def _noisy(counts: dict[str, int], fig: Figures, policy: DisclosurePolicy) -> dict[str, int]:
    assert policy.dp is not None
    import opendp.prelude as dp

    dp.enable_features("contrib")
    # one person is in at most one cell of each relation's partition of a total, so the
    # L1 sensitivity of all released counts together is bounded by the number of totals
    # (each counted once) plus the cells under them
    totals = {r.total for r in fig.relations}
    sensitivity = max(len(totals) + len(fig.partners), 1)
    scale = sensitivity / policy.dp.epsilon_per_release
    mechanism = dp.m.make_laplace(dp.atom_domain(T=int), dp.absolute_distance(T=int), scale=scale)
    return {name: max(int(mechanism(value)), 0) for name, value in counts.items()}


def disclose(
    fig: Figures,
    policy: DisclosurePolicy,
    *,
    anchors: Anchors | None = None,
    epsilon_left: float | None = None,
    histogram: list[dict[str, Any]] | None = None,
) -> Release:
    """Decide the released value of every figure of ``fig`` under ``policy``."""
    counts = {n: v for n, v in fig.counts.items() if n not in fig.virtual}
    spent = 0.0
    if policy.dp is not None:
        if epsilon_left is not None and policy.dp.epsilon_per_release > epsilon_left + 1e-12:
            raise DisclosureError(
                f"the project's privacy budget is spent ({epsilon_left:.3g} of epsilon left, "
                f"a release needs {policy.dp.epsilon_per_release:.3g})"
            )
        counts = _noisy(counts, fig, policy)
        spent = policy.dp.epsilon_per_release

    released: dict[str, int | None] = {n: apply_primary(v, policy) for n, v in counts.items()}

    new_anchors: dict[str, tuple[int, int | None]] = {}
    fixed: set[str] = set()  # released before, unchanged within k: public already
    for name, value in counts.items():
        previous = (anchors or {}).get(name)
        if previous is not None and abs(value - previous[0]) < policy.suppress_below:
            released[name] = previous[1]
            new_anchors[name] = previous
            if previous[1] is not None:
                fixed.add(name)
        else:
            new_anchors[name] = (value, released[name])

    blocked = {n for n, v in fig.counts.items() if n in fig.virtual and _sensitive(v, policy)}
    _secondary(fig, counts, released, blocked, fixed)

    figures: dict[str, int | float | None] = dict(released)
    for name, mean in fig.means.items():
        count_name = fig.mean_n[name]
        n = fig.counts[count_name]
        ok = released.get(count_name) is not None and n >= policy.min_n_for_mean
        figures[name] = round(mean, 1) if ok else None
    for name in list(new_anchors):
        # a suppressed-by-secondary figure is anchored at what was actually released
        new_anchors[name] = (new_anchors[name][0], released[name])
    hist = [{**b, "pairs": apply_primary(int(b["pairs"]), policy)} for b in (histogram or [])]
    suppressed = sorted(n for n, v in figures.items() if v is None)
    return Release(figures, suppressed, new_anchors, spent, hist)


def _secondary(
    fig: Figures,
    counts: Mapping[str, int],
    released: dict[str, int | None],
    blocked: set[str],
    fixed: set[str],
) -> None:
    """Suppress more cells until no relation has exactly one hidden-but-derivable cell.

    Cells in ``fixed`` were released by an earlier run and are public whatever this run
    does, so hiding them would protect nothing: another cell or the total is hidden.
    """

    def hidden(name: str) -> bool:
        return name in blocked or (name in released and released[name] is None)

    changed = True
    while changed:
        changed = False
        for relation in fig.relations:
            if hidden(relation.total) or relation.total in fig.virtual:
                continue
            cells = relation.cells
            # what an attacker does not see: suppressed cells and unreleased complements;
            # one unknown cell in a relation is derivable from the others and the total
            unknown = [c for c in cells if hidden(c) or c in fig.virtual]
            if len(unknown) != 1 or not hidden(unknown[0]):
                continue
            candidates = [
                c for c in cells if not hidden(c) and c in released and c not in fig.virtual
            ]
            if candidates:
                pick = min(candidates, key=lambda c: (counts.get(c, 0) == 0, counts.get(c, 0), c))
                released[pick] = None
            elif relation.total in released:
                released[relation.total] = None
            else:
                raise DisclosureError("cannot protect a suppressed figure")  # pragma: no cover
            changed = True
