"""Training chosen from the data: a checked prior, u by sampling, m by diverse EM passes.

- Prior (the probability that two random records match): pairs found by several
  deterministic rules, with the recall of their union *estimated* by capture-recapture
  (Lincoln-Petersen with Chapman's correction) over pairs of rules, instead of assumed.
  With no pairs at all (partners with nobody in common) a fixed, stated prior is used,
  so the run releases zeros instead of failing.
- m by expectation maximisation over several passes, each blocked on a different
  identifier, never on a column where one value covers many records (that trains on
  households, not people), each on a bounded sample of pairs (Splink's ``max_pairs``),
  so that every comparison is trained on at least one pass that does not block on it.
  Passes blocked on two identifiers of the person (forename, birth date, id) come
  first: household members share surname and address, twins a birth date, some an id,
  but rarely two of those, so EM does not learn "same household" as "same person".
  A pass that finds no pairs is skipped; levels left untrained keep Splink's defaults.
- After prediction the prior is refined to the model's own expected share of matching
  pairs (:func:`refine_prior`), within the bounds the deterministic rules set.
- For a linkage of several extracts, the share of matches within one extract (for the
  same/different-extract comparison, see ``linkage.match.comparisons``).

Everything reported is aggregate and rounded.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np

from linkage.match.blocking import count_pairs, sample_proportion
from linkage.match.comparisons import ORIGIN
from linkage.match.profile import ColumnProfile
from linkage.spec import IdentifierSpec, Spec, token_column

__all__ = ["DEFAULT_EM_MAX_PAIRS", "TrainingReport", "refine_prior", "train"]

DEFAULT_EM_MAX_PAIRS = 1_000_000
_MAX_PASSES = 3
_MIN_RECALL = 0.3  # the union of deterministic rules finds at least this share of matches
_ASSUMED_RECALL = 0.8  # only when recall cannot be estimated (one rule, or no overlap)
_FALLBACK_MATCH_SHARE = 0.05  # no deterministic pair: assume 5% of the smallest extract
#: no level is ever certain: EM on clean training pairs can learn m = 0 for "id
#: disagrees", which would forbid any link with an id typo or a married-name change
M_FLOOR = 0.005
U_FLOOR = 1e-7


@dataclass
class TrainingReport:
    """What training used and found, as aggregates for the run's diagnostics."""

    prior: float = 0.0
    prior_method: str = ""
    rule_recall: float | None = None
    #: estimated share of matching pairs within one extract (None: one extract)
    within_share: float | None = None
    passes: list[dict[str, Any]] = field(default_factory=list)
    untrained: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """JSON-ready, rounded."""
        return {
            "prior": float(f"{self.prior:.2g}"),
            "prior_method": self.prior_method,
            "deterministic_recall": None
            if self.rule_recall is None
            else round(self.rule_recall, 2),
            "within_extract_match_share": None
            if self.within_share is None
            else round(self.within_share, 2),
            "em_passes": self.passes,
            "untrained_comparisons": self.untrained,
        }


def _first(spec: Spec, kinds: Sequence[str]) -> IdentifierSpec | None:
    return next((i for i in spec.identifiers if i.type in kinds), None)


def _col(ident: IdentifierSpec | None, variant: str) -> str | None:
    if ident is None or variant not in ident.active_variants:
        return None
    return token_column(ident.name, variant)


def _usable(columns: Sequence[str | None], profiles: Mapping[str, ColumnProfile]) -> bool:
    return all(c is not None and c in profiles and profiles[c].filled > 0 for c in columns)


def deterministic_rules(spec: Spec, profiles: Mapping[str, ColumnProfile]) -> list[tuple[str, ...]]:
    """Strict rules that rarely pair two different people (for the prior)."""
    fore, sur = _first(spec, ("forename",)), _first(spec, ("surname",))
    dob, pc = _first(spec, ("date",)), _first(spec, ("uk_postcode", "postcode"))
    candidates: list[tuple[str | None, ...]] = [
        (token_column(i.name, "exact"),) for i in spec.identifiers if i.type in ("nhs_number", "id")
    ]
    candidates.append((_col(fore, "exact"), _col(sur, "exact"), _col(dob, "full")))
    # shares no surname with the rule above: married-name changes still count
    candidates.append((_col(fore, "exact"), _col(dob, "full"), _col(pc, "full")))
    rules = []
    for rule in candidates:
        if not _usable(rule, profiles):
            continue
        # an id where one value is common (a placeholder) is not a deterministic rule
        if len(rule) == 1 and profiles[rule[0]].degenerate:  # type: ignore[index]
            continue
        rules.append(tuple(c for c in rule if c is not None))
    return rules


def estimate_prior(
    sdfs: Sequence[Any],
    rules: Sequence[tuple[str, ...]],
    *,
    link_type: str,
    n_records: int,
    smallest_extract: int,
    union: int,
) -> tuple[float, str, float | None]:
    """(prior, how it was found, estimated recall of the rules' union); ``union``: the
    pairs the rules find together (:func:`rules_union`)."""
    total = n_records * (n_records - 1) / 2
    if total <= 0:
        return 0.5, "fixed (fewer than two records)", None
    counts = count_pairs(sdfs, rules, link_type, 1.0) if rules else []
    if union == 0:
        expected = max(1.0, _FALLBACK_MATCH_SHARE * smallest_extract)
        return (
            min(expected / total, 0.5),
            "fixed: no deterministic rule found a pair "
            f"(assumed {_FALLBACK_MATCH_SHARE:.0%} of the smallest extract match)",
            None,
        )
    estimates = []
    for (i, a), (j, b) in combinations(enumerate(rules), 2):
        if counts[i] == 0 or counts[j] == 0:
            continue
        both = count_pairs(sdfs, [tuple(dict.fromkeys((*a, *b)))], link_type, 1.0)[0]
        if both == 0:
            continue  # no overlap: independence gives no bound
        estimates.append((counts[i] + 1) * (counts[j] + 1) / (both + 1) - 1)
    if estimates:
        expected = min(max(statistics.median(estimates), union), union / _MIN_RECALL)
        method = f"capture-recapture over {len(rules)} deterministic rules"
    else:
        expected = union / _ASSUMED_RECALL
        method = f"deterministic rules with assumed recall {_ASSUMED_RECALL}"
    recall = union / expected
    return min(expected / total, 0.5), method, recall


def refine_prior(weights: np.ndarray, n_records: int, prior: float, recall: float | None) -> float:
    """The prior checked against the model itself: the share of all pairs that the
    model, with that prior, expects to match (the sum of the scored pairs' match
    probabilities over all pairs) -- the expectation-maximisation update of the prior,
    iterated to its fixed point. ``weights``: match weights of the scored pairs under
    ``prior`` (pairs not scored count as non-matches). Kept within what the
    deterministic rules allow: at least the pairs they found, at most those over
    :data:`_MIN_RECALL` (``recall``: their estimated recall; None keeps ``prior``)."""
    total = n_records * (n_records - 1) / 2
    if recall is None or total <= 0 or len(weights) == 0 or not 0 < prior < 1:
        return prior
    low, high = prior * recall, min(prior * recall / _MIN_RECALL, 0.5)
    base = math.log2(prior / (1 - prior))
    current = prior
    for _ in range(100):
        shift = math.log2(current / (1 - current)) - base
        expected = float(np.sum(1.0 / (1.0 + np.exp2(-(weights + shift))))) / total
        updated = min(max(expected, low), high)
        if abs(updated - current) <= 1e-6 * current:
            return updated
        current = updated
    return current


def rules_union(sdfs: Sequence[Any], rules: Sequence[tuple[str, ...]], link_type: str) -> int:
    """Pairs found by at least one of ``rules`` (Splink's counter); 0 without rules."""
    if not rules:
        return 0
    from splink import block_on
    from splink.blocking_analysis import count_comparisons_from_blocking_rules

    records = count_comparisons_from_blocking_rules(
        list(sdfs) if len(sdfs) > 1 else sdfs[0],
        blocking_rules=[block_on(*r) for r in rules],
        link_type=link_type,  # type: ignore[arg-type]
        record_sample_proportion=1.0,
    )
    return int(records[-1]["cumulative_comparison_count"])


def within_share(sdfs: Sequence[Any], rules: Sequence[tuple[str, ...]], union: int) -> float | None:
    """Estimated share of matching pairs that lie within one extract: the deterministic
    rules' pairs inside each extract over all their pairs (``union``, counted over all
    extracts by :func:`rules_union`), with half a pair added to each side (an extract
    with no duplicate found still may have one). None without rules or pairs."""
    if not rules or len(sdfs) < 2 or union == 0:
        return None
    within = sum(rules_union([sdf], rules, "dedupe_only") for sdf in sdfs)
    return (within + 0.5) / (union + 1.0)


def set_origin(linker: Any, share: float | None, sizes: Sequence[int]) -> None:
    """Fix the m and u of the same/different-extract comparison (see
    ``linkage.match.comparisons.origin_comparison``); equal (no evidence) when the share
    of matches within extracts cannot be estimated."""
    n = sum(sizes)
    total = n * (n - 1) / 2
    u_same = sum(s * (s - 1) / 2 for s in sizes) / total if total else 0.5
    m_same = u_same if share is None else share
    for comparison in linker._settings_obj.comparisons:
        if comparison.output_column_name != ORIGIN:
            continue
        same, other = [lv for lv in comparison.comparison_levels if not lv.is_null_level]
        # both strictly inside (0, 1): one extract of one record has no pairs within
        same.m_probability, other.m_probability = _open(m_same), _open(1 - m_same)
        same.u_probability, other.u_probability = _open(u_same), _open(1 - u_same)


def _open(p: float) -> float:
    return min(max(p, 1e-9), 1 - 1e-9)


def em_passes(
    spec: Spec, profiles: Mapping[str, ColumnProfile], label: Mapping[str, str]
) -> tuple[list[tuple[str, ...]], list[str]]:
    """Diverse EM blocking passes (and warnings for candidates refused as degenerate)."""
    fore, sur = _first(spec, ("forename",)), _first(spec, ("surname",))
    dob, pc = _first(spec, ("date",)), _first(spec, ("uk_postcode", "postcode"))
    ids = [
        token_column(i.name, "exact") for i in spec.identifiers if i.type in ("nhs_number", "id")
    ]
    # first, pairs that agree on two identifiers of the person (not of the household):
    # members of one household share surname and address, twins a birth date, some an
    # id, but rarely two of forename, birth date and id; a pass blocked on one of those
    # alone trains on household members as if they were matches
    personal = [_col(fore, "exact"), _col(dob, "full"), *ids]
    candidates: list[tuple[str | None, ...]] = [
        (a, b) for a, b in combinations(personal, 2) if a is not None and b is not None
    ]
    candidates.append((_col(dob, "full"),))
    candidates += [(i,) for i in ids]
    candidates += [
        (_col(fore, "exact"), _col(sur, "exact")),
        (_col(pc, "full"),),
        (_col(sur, "exact"), _col(dob, "year")),
        (_col(fore, "exact"), _col(dob, "year_month")),
    ]
    warnings: list[str] = []
    field_of = {tc: label.get(tc, tc) for rule in candidates for tc in rule if tc}
    usable = []
    for rule in candidates:
        if not _usable(rule, profiles):
            continue
        cols = tuple(c for c in rule if c is not None)
        bad = [c for c in cols if profiles[c].degenerate]
        if bad:
            warnings += [
                f"{field_of[c]}: one value covers {profiles[c].top_share:.0%} of the records "
                "that have one; not used for training"
                for c in bad
            ]
            continue
        usable.append(cols)
    fields = {i.name for i in spec.identifiers}

    def blocked(rule: tuple[str, ...]) -> set[str]:
        return {f for f in fields for c in rule if c.startswith(f"t_{f}_")}

    chosen: list[tuple[str, ...]] = []
    trained: set[str] = set()
    for rule in usable:
        if len(chosen) >= _MAX_PASSES:
            break
        gain = (fields - blocked(rule)) - trained
        if gain or len(chosen) < 2:
            chosen.append(rule)
            trained |= fields - blocked(rule)
    if not chosen:
        # nothing is informative enough: fall back to the rarest non-degenerate column
        rarest = sorted((p for p in profiles.values() if p.filled and not p.degenerate),
                        key=lambda p: p.top_share)  # fmt: skip
        if rarest:
            chosen.append((rarest[0].column,))
    return chosen, list(dict.fromkeys(warnings))


def train(
    linker: Any,
    sdfs: Sequence[Any],
    spec: Spec,
    profiles: Mapping[str, ColumnProfile],
    *,
    link_type: str,
    sizes: Sequence[int],
    label: Mapping[str, str],
    seed: int,
    em_max_pairs: int = DEFAULT_EM_MAX_PAIRS,
    logger: logging.Logger,
) -> TrainingReport:
    """Train ``linker``'s model in place; never raises for lack of matching pairs."""
    from splink import block_on

    report = TrainingReport()
    n_records = sum(sizes)
    rules = deterministic_rules(spec, profiles)
    # the rules' pairs over all extracts, counted once for the prior and the within share
    union = rules_union(sdfs, rules, link_type) if n_records > 1 else 0
    prior, method, recall = estimate_prior(
        sdfs, rules, link_type=link_type, n_records=n_records,
        smallest_extract=min(sizes), union=union,
    )  # fmt: skip
    linker._settings_obj._probability_two_random_records_match = prior
    report.prior, report.prior_method, report.rule_recall = prior, method, recall
    if link_type == "link_and_dedupe" and not method.startswith("fixed"):
        report.within_share = within_share(sdfs, rules, union)
    set_origin(linker, report.within_share, sizes)

    try:
        linker.training.estimate_u_using_random_sampling(
            max_pairs=spec.matching.max_pairs_for_u, seed=seed
        )
    except Exception as exc:  # Splink's messages carry no record values
        logger.warning("u estimation failed (%s); default u used", type(exc).__name__)
        report.warnings.append("u could not be estimated; default u used")

    passes, warnings = em_passes(spec, profiles, label)
    report.warnings += warnings
    if method.startswith("fixed"):
        # EM on pairs of strangers fits noise as "matches": keep Splink's default m
        report.passes = [{"blocked_on": "-", "status": "skipped: no deterministic matches; "
                          "default m-probabilities used"}]  # fmt: skip
        passes = []
    proportion = sample_proportion(n_records)
    small = n_records * (n_records - 1) // 2 <= em_max_pairs  # no pass can exceed it
    for rule in passes:
        name = " & ".join(label.get(c, c) for c in rule)
        pairs = -1 if small else count_pairs(sdfs, [rule], link_type, proportion)[0]
        entry: dict[str, Any] = {"blocked_on": name}
        if pairs == 0:
            entry["status"] = "no pairs; skipped"
            report.passes.append(entry)
            continue
        try:
            linker.training.estimate_parameters_using_expectation_maximisation(
                block_on(*rule), estimate_without_term_frequencies=True,
                max_pairs=em_max_pairs if pairs > em_max_pairs else None,
            )  # fmt: skip
            entry["status"] = "trained"
            if pairs >= 0:
                entry["pairs"] = min(pairs, em_max_pairs)
        except Exception as exc:  # e.g. too few pairs to estimate from
            logger.warning("EM pass on %s failed (%s); skipped", name, type(exc).__name__)
            entry["status"] = "could not be estimated; skipped"
        report.passes.append(entry)
    # the prior is ours, not the EM passes' (Splink does not overwrite it, but be sure)
    linker._settings_obj._probability_two_random_records_match = prior
    report.untrained = _smooth(linker)
    implausible = _reset_implausible(linker)
    if implausible:
        report.warnings.append(
            "training gave " + ", ".join(implausible) + " more weight to disagreeing than "
            "to agreeing; default m-probabilities used for them"
        )
    if report.untrained:
        report.warnings.append(
            "some levels of " + ", ".join(report.untrained) + " were not seen among likely "
            "matches in training; default m-probabilities used for them"
        )
    return report


def _smooth(linker: Any) -> list[str]:
    """Floor m and u so that no single disagreement is an absolute veto and no agreement
    is infinitely strong; return the comparisons with a level EM never saw."""
    untrained = []
    for comparison in linker._settings_obj.comparisons:
        # levels fixed by the comparison's design (a neutral level) keep their values
        levels = [lv for lv in comparison.comparison_levels
                  if not lv.is_null_level and not lv._fix_m_probability]  # fmt: skip
        fixed = sum(float(lv.m_probability) for lv in comparison.comparison_levels
                    if not lv.is_null_level and lv._fix_m_probability)  # fmt: skip
        if not levels:
            continue  # every level fixed by design
        if any(lv._m_probability is None for lv in levels):
            untrained.append(comparison.output_column_name)
        ms = [lv.m_probability for lv in levels]
        if all(isinstance(m, float) for m in ms):
            floored = [max(float(m), M_FLOOR) for m in ms]
            total = sum(floored) / (1.0 - fixed)
            for level, m in zip(levels, floored, strict=True):
                level.m_probability = m / total
        for level in levels:
            u = level.u_probability
            if isinstance(u, float) and u < U_FLOOR and not level._fix_u_probability:
                level.u_probability = U_FLOOR
    return untrained


def _reset_implausible(linker: Any) -> list[str]:
    """Comparisons whose exact level came out weaker than a lower one (EM fitted noise,
    e.g. on pairs of strangers): reset to Splink's default m; return their names."""
    reset = []
    for comparison in linker._settings_obj.comparisons:
        levels = [lv for lv in comparison.comparison_levels
                  if not lv.is_null_level and not lv._fix_m_probability]  # fmt: skip
        weights: list[float] = []
        for level in levels:
            m, u = level.m_probability, level.u_probability
            if not isinstance(m, float) or not isinstance(u, float) or m <= 0 or u <= 0:
                weights = []
                break
            weights.append(m / u)
        # (a rarer fuzzy level, e.g. names swapped, may outweigh exact: that is fine)
        if len(weights) >= 2 and (weights[0] < 1 or weights[-1] >= weights[0]):
            for level in levels:
                level.m_probability = level.default_m_probability
            reset.append(comparison.output_column_name)
    return reset
