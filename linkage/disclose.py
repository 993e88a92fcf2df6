"""Statistical disclosure control: what of the exact figures may be released.

Partners and analysts are adversaries here (DESIGN.md): a partner can submit the one
person it wants to ask about, padded with made-up people; an analyst chooses parameters
and how often to run. Every count therefore goes through, in this order:

1. **perturbation**, so that no single person changes a released figure
   deterministically:

   - ``cell_key`` (default): the cell key method ONS used for Census 2021, with a
     discrete Laplace ptable (``linkage.perturb``). Per count, one person in or out
     changes the probability of any released value by at most exp(epsilon), except with
     probability delta (both stated in :attr:`Release.guarantee`). The noise is a
     function of the run's secret, parameters, inputs and exact figures: the same run
     repeated releases the same figures (nothing to average), any change draws afresh;
   - ``dp`` (when the policy sets it): differential privacy with OpenDP's discrete
     Laplace, calibrated to everything one person can change at once (all counts, and
     the bounded sums behind the means), drawing ``epsilon_per_release`` from the
     project's budget;

2. **suppression and rounding** of the perturbed value: below ``suppress_below``
   suppressed, zero included (zero and small counts release the same ``None``), the
   rest rounded to the nearest ``round_to``;
3. **secondary suppression**: in every additive relation (a total and its cells,
   unreleased complementary cohorts included), a lone hidden cell is joined by the
   smallest other cell that was never released under these parameters before, else by
   the total, so no hidden cell is a difference of released figures;
4. **means** from the perturbed sum of each person's contacts (capped at
   ``contacts_bound``) over the perturbed count, shown only when that count is released
   and its perturbed value reaches ``min_n_for_mean``;
5. **names**: figures of an attribute value the spec does not declare (an area only
   the data names), or of a combination of partners listed only because it occurs,
   appear only when that value's (combination's) perturbed people count clears
   suppression; otherwise they are left out, so no name says that someone has it.

The match-weight histogram and the m/u parameters are withheld: they count pairs, not
people, one person can move them by an unbounded amount, and neither mechanism covers
them. Every decision above reads perturbed values only, never exact ones.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from linkage.errors import DisclosureError
from linkage.perturb import cell_key, ptable, run_secret
from linkage.spec import DisclosurePolicy
from linkage.stats import Figures

__all__ = ["Release", "apply_primary", "disclose"]

_PUBLIC = "public"  # anchors: "<parameters tag>|<figure>" released before


@dataclass
class Release:
    """The released figures (None = suppressed) and the enclave's private bookkeeping."""

    figures: dict[str, int | float | None]
    suppressed: list[str]
    #: JSON-serialisable, for the enclave's own state: which figures are public already
    anchors: dict[str, Any] = field(default_factory=dict)
    epsilon_spent: float = 0.0
    histogram: list[dict[str, Any]] = field(default_factory=list)  # withheld: always []
    comparisons: list[dict[str, Any]] = field(default_factory=list)  # withheld: always []
    #: what the mechanism guarantees for this release (safe to publish)
    guarantee: dict[str, Any] = field(default_factory=dict)
    #: why each suppressed figure is hidden: "primary" (itself too small, or a mean on
    #: too few people) or "secondary" (hidden to protect another cell); safe to publish
    suppressed_reason: dict[str, str] = field(default_factory=dict)


def _round(value: int, to: int) -> int:
    return int((value + to / 2) // to * to) if to > 1 else value


def apply_primary(value: int, policy: DisclosurePolicy) -> int | None:
    """The released form of one perturbed count (None = suppressed): below the
    threshold suppressed, zero included; the rest rounded."""
    if value < policy.suppress_below:
        return None
    return _round(value, policy.round_to)


def _fingerprint(fig: Figures, name: str) -> int:
    found = fig.populations.get(name)
    if found is not None:
        return found
    # hand-built figures without populations: every cell its own noise
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")


def _clipped_sum(fig: Figures, mean: str, bound: int) -> int:
    return sum(min(int(c), bound) * n for c, n in fig.contacts.get(mean, {}).items())


_Noise = tuple[dict[str, int], dict[str, int], dict[str, Any]]  # counts, sums, guarantee


def _cell_key_noise(
    fig: Figures,
    policy: DisclosurePolicy,
    secret: bytes,
    parameters: Mapping[str, Any] | None,
    inputs: Sequence[str],
) -> _Noise:
    exact = {"counts": fig.counts, "contacts": fig.contacts}
    run = run_secret(secret, parameters=parameters, inputs=inputs, exact=exact)
    cfg, bound = policy.cell_key, policy.contacts_bound
    counts_table = ptable(cfg.epsilon, cfg.max_perturbation)
    sums_table = ptable(cfg.epsilon, cfg.max_perturbation, bound)
    counts = {
        name: max(value + counts_table.noise(cell_key(run, b"count", _fingerprint(fig, name))), 0)
        for name, value in fig.counts.items()
    }
    sums = {
        mean: _clipped_sum(fig, mean, bound)
        + sums_table.noise(cell_key(run, b"sum", _fingerprint(fig, fig.mean_n[mean])))
        for mean in fig.means
    }
    eps, delta = counts_table.bound()
    eps_sum, delta_sum = sums_table.bound()
    cells, means = fig.cells_per_person(), fig.means_per_person()
    guarantee = {
        "mechanism": "cell_key",
        "epsilon_per_count": round(eps, 6),
        "delta_per_count": delta,
        "epsilon_per_mean": round(eps_sum, 6),
        "delta_per_mean": delta_sum,
        "max_perturbation": cfg.max_perturbation,
        "noise_variance": round(counts_table.variance, 6),
        "counts_per_person": cells,
        "means_per_person": means,
        "epsilon_per_person": round(cells * eps + means * eps_sum, 6),
        "delta_per_person": cells * delta + means * delta_sum,
    }
    return counts, sums, guarantee


def _dp_noise(fig: Figures, policy: DisclosurePolicy) -> _Noise:
    assert policy.dp is not None
    import opendp.prelude as dp

    dp.enable_features("contrib")
    # one person is in at most cells_per_person counts (each moves by 1) and enters at
    # most means_per_person sums (each moves by at most contacts_bound): measured in
    # units of 1 per count and contacts_bound per sum, the L1 sensitivity of the whole
    # vector is their total, and one discrete Laplace scale covers it
    bound = policy.contacts_bound
    cells, means = fig.cells_per_person(), fig.means_per_person()
    scale = (cells + means) / policy.dp.epsilon_per_release
    domain, metric = dp.vector_domain(dp.atom_domain(T=int)), dp.l1_distance(T=int)
    count_noise = dp.m.make_laplace(domain, metric, scale=scale)
    sum_noise = dp.m.make_laplace(domain, metric, scale=scale * bound)
    # OpenDP's own privacy maps, for the neighbour above: both together within budget
    epsilon = float(count_noise.map(cells)) + float(sum_noise.map(means * bound))  # type: ignore[no-untyped-call]
    if epsilon > policy.dp.epsilon_per_release * (1 + 1e-9):  # pragma: no cover
        raise DisclosureError("the noise does not meet the project's epsilon per release")
    names, mean_names = list(fig.counts), list(fig.means)
    noised = count_noise([int(fig.counts[n]) for n in names]) if names else []
    counts = {n: max(int(v), 0) for n, v in zip(names, noised, strict=True)}
    clipped = [_clipped_sum(fig, m, bound) for m in mean_names]
    sums = dict(zip(mean_names, map(int, sum_noise(clipped) if clipped else []), strict=True))
    guarantee = {
        "mechanism": "differential_privacy",
        "epsilon_per_release": round(epsilon, 6),
        "delta": 0.0,
        "noise_scale_counts": scale,
        "noise_scale_sums": scale * bound,
        "counts_per_person": cells,
        "means_per_person": means,
    }
    return counts, sums, guarantee


def _parameters_tag(parameters: Mapping[str, Any] | None) -> str:
    canonical = json.dumps(dict(parameters or {}), sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def disclose(
    fig: Figures,
    policy: DisclosurePolicy,
    *,
    anchors: Mapping[str, Any] | None = None,
    epsilon_left: float | None = None,
    histogram: list[dict[str, Any]] | None = None,
    cell_key_secret: bytes | None = None,
    parameters: Mapping[str, Any] | None = None,
    inputs: Sequence[str] = (),
    comparisons: list[dict[str, Any]] | None = None,
) -> Release:
    """Decide the released value of every figure of ``fig`` under ``policy``.

    ``cell_key_secret``: the enclave's per-project secret behind the cell key method;
    without it each call draws fresh noise (the per-release guarantee holds, but the
    same run repeated could then be averaged). ``parameters``: the run's choices (match
    and frequent-user thresholds...) and ``inputs``: digests of the submissions linked;
    both key the noise and ``parameters`` keys which figures count as public already.
    ``anchors``: what an earlier :class:`Release` returned for the project (older forms
    are ignored). ``histogram`` and ``comparisons`` are accepted and withheld.
    """
    del histogram, comparisons  # pair-level diagnostics: withheld (see the module doc)
    spent = 0.0
    if policy.dp is not None:
        if epsilon_left is not None and policy.dp.epsilon_per_release > epsilon_left + 1e-12:
            raise DisclosureError(
                f"the project's privacy budget is spent ({epsilon_left:.3g} of epsilon left, "
                f"a release needs {policy.dp.epsilon_per_release:.3g})"
            )
        noisy, sums, guarantee = _dp_noise(fig, policy)
        spent = policy.dp.epsilon_per_release
    else:
        secret = cell_key_secret if cell_key_secret is not None else os.urandom(32)
        noisy, sums, guarantee = _cell_key_noise(fig, policy, secret, parameters, inputs)

    released: dict[str, int | None] = {
        n: apply_primary(v, policy) for n, v in noisy.items() if n not in fig.virtual
    }
    blocked = {n for n in fig.virtual if apply_primary(noisy[n], policy) is None}
    unnamed = _unnamed(fig, noisy, policy)
    for name in unnamed & set(released):
        released[name] = None  # hidden in every relation, then left out altogether
    tag = _parameters_tag(parameters)
    public = {str(p) for p in (anchors or {}).get(_PUBLIC, []) if isinstance(p, str)}
    fixed = {n for n in released if f"{tag}|{n}" in public}
    primary = {n for n, v in released.items() if v is None}  # before secondary suppression
    _secondary(fig, noisy, released, blocked, fixed)

    figures: dict[str, int | float | None] = dict(released)
    bound = policy.contacts_bound
    for name in fig.means:
        count_name = fig.mean_n[name]
        n = noisy[count_name]
        ok = released.get(count_name) is not None and n >= policy.min_n_for_mean
        figures[name] = round(min(max(sums[name] / n, 0.0), float(bound)), 1) if ok else None
    public |= {f"{tag}|{n}" for n, v in released.items() if v is not None}
    figures = {n: v for n, v in figures.items() if n not in unnamed}
    suppressed = sorted(n for n, v in figures.items() if v is None)
    reasons = {n: "primary" if n in primary or n in fig.means else "secondary" for n in suppressed}
    return Release(
        figures, suppressed, {_PUBLIC: sorted(public)}, spent, [], [], guarantee, reasons
    )


def _unnamed(fig: Figures, noisy: Mapping[str, int], policy: DisclosurePolicy) -> set[str]:
    """Figures of attribute values that only the data named (an area nobody declared)
    and whose people count does not clear suppression: they are left out, names and all.

    Otherwise the names alone would tell: a person known only to police, in an area
    no one else in the data has, adds a dozen ``...area.<that area>...`` figures to the
    release, suppressed or not. The decision reads the perturbed count of
    ``persons.by.<attribute>.<value>.count``, so it is covered by that figure's guarantee.
    The same for a combination of partners listed only because it occurs (projects of
    more partners than every combination is listed for): its own perturbed count.
    """
    out: set[str] = set()
    for name in fig.occurring:  # a combination of partners only the data names
        if name in noisy and apply_primary(noisy[name], policy) is None:
            out |= {name, f"{name}.low", f"{name}.high"}
    names = [*fig.counts, *fig.means]
    for attr, values in fig.undeclared.items():
        for value in values:
            gate = f"persons.by.{attr}.{value}.count"
            if gate in noisy and apply_primary(noisy[gate], policy) is not None:
                continue
            part = f".{attr}.{value}."
            out |= {n for n in names if part in f".{n}."}
    return out


def _secondary(
    fig: Figures,
    noisy: Mapping[str, int],
    released: dict[str, int | None],
    blocked: set[str],
    fixed: set[str],
) -> None:
    """Suppress more cells until no relation has exactly one hidden-but-derivable cell.

    Cells in ``fixed`` were released under the same parameters before and are public
    whatever this run does, so hiding them would protect nothing: another cell, or else
    the total, is hidden instead. Choices read perturbed values only.
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
                c
                for c in cells
                if not hidden(c) and c in released and c not in fig.virtual and c not in fixed
            ]
            if candidates:
                pick = min(candidates, key=lambda c: (noisy.get(c, 0), c))
                released[pick] = None
            elif relation.total in released:
                released[relation.total] = None
            else:
                raise DisclosureError("cannot protect a suppressed figure")  # pragma: no cover
            changed = True
