"""Prediction blocking rules checked against the data before they run.

Each rule's pair count is measured with Splink's own counter
(``splink.blocking_analysis.count_comparisons_from_blocking_rules``). A rule over the
pair budget is refined by one more agreeing column (a date-of-birth part, sex, an
initial) until it fits, or dropped with a plain warning; if no rule fits the linkage
fails with one safe sentence instead of exhausting the machine. Only rounded counts and
field names leave this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from linkage.errors import MatchError
from linkage.match.profile import ColumnProfile

__all__ = ["DEFAULT_MAX_PAIRS_PER_RULE", "BlockingPlan", "Rule", "count_pairs", "plan_blocking"]

#: a rule: token columns that must agree, or a SQL condition on ``l.`` and ``r.`` columns
#: (for agreement across two columns, e.g. forename and surname swapped)
Rule = tuple[str, ...] | str

#: pairs one prediction rule may generate (about 30 s of DuckDB scoring on 2 cores)
DEFAULT_MAX_PAIRS_PER_RULE = 100_000_000
_EXACT_COUNT_UP_TO = 100_000  # records; above, counts are estimated from a record sample


@dataclass
class BlockingPlan:
    """The rules to predict with, what each costs, and why any was changed."""

    rules: list[Rule]
    pairs: list[int]  # per rule; -1: not counted (fewer possible pairs than the budget)
    warnings: list[str] = field(default_factory=list)

    def summary(self, label: Mapping[str, str]) -> list[dict[str, Any]]:
        """Rules by field names with rounded pair counts (aggregates only)."""
        return [
            {"rule": rule_label(rule, label), "pairs": _round_count(n) if n >= 0 else None}
            for rule, n in zip(self.rules, self.pairs, strict=True)
        ]


def rule_label(rule: Rule, label: Mapping[str, str]) -> str:
    """A rule by field names (``forename.exact & dob.full``)."""
    if isinstance(rule, str):
        return label.get(rule, "custom rule")
    return " & ".join(label.get(c, c) for c in rule)


def as_splink_rule(rule: Rule) -> Any:
    """The Splink blocking rule of ``rule``."""
    from splink import block_on

    return rule if isinstance(rule, str) else block_on(*rule)


def _round_count(n: int) -> int:
    """Two significant figures: enough to judge cost, too coarse to identify anyone."""
    if n < 100:
        return round(n, -1)
    digits = len(str(int(n))) - 2
    return int(round(n, -digits))


def sample_proportion(n_records: int) -> float:
    """Record sampling for counting: exact on small data, about 1% of pairs on large."""
    if n_records <= _EXACT_COUNT_UP_TO:
        return 1.0
    return max(0.05, _EXACT_COUNT_UP_TO / n_records)


def count_pairs(
    sdfs: Sequence[Any], rules: Sequence[Rule], link_type: str, proportion: float
) -> list[int]:
    """Pairs each rule generates on its own (not net of earlier rules), by Splink's counter."""
    from splink.blocking_analysis import count_comparisons_from_blocking_rules

    counts = []
    for rule in rules:
        record = count_comparisons_from_blocking_rules(
            list(sdfs) if len(sdfs) > 1 else sdfs[0],
            blocking_rules=as_splink_rule(rule),
            link_type=link_type,  # type: ignore[arg-type]
            record_sample_proportion=proportion,
        )[0]
        counts.append(int(record["marginal_comparison_count"]))
    return counts


def plan_blocking(
    sdfs: Sequence[Any],
    rules: Sequence[Rule],
    *,
    link_type: str,
    profiles: Mapping[str, ColumnProfile],
    refiners: Sequence[str],
    label: Mapping[str, str],
    max_pairs: int = DEFAULT_MAX_PAIRS_PER_RULE,
) -> BlockingPlan:
    """Keep, refine or drop each of ``rules`` so none makes more than ``max_pairs`` pairs.

    ``refiners``: token columns that may be added to a rule over budget, strongest
    first. ``label``: column -> field name, for the warnings.
    """
    n_records = max((p.rows for p in profiles.values()), default=0)
    if n_records * (n_records - 1) // 2 <= max_pairs:
        # no rule can make more pairs than there are: nothing to count
        return BlockingPlan(list(rules), [-1] * len(rules))
    proportion = sample_proportion(n_records)
    plan = BlockingPlan([], [])
    for rule, n in zip(rules, count_pairs(sdfs, rules, link_type, proportion), strict=True):
        name = rule_label(rule, label)
        if n <= max_pairs:
            plan.rules.append(rule)
            plan.pairs.append(n)
            continue
        refined = _refine(sdfs, rule, n, link_type, proportion, profiles, refiners, max_pairs)
        if refined is None:
            plan.warnings.append(
                f"blocking rule {name}: about {_round_count(n):,} pairs, over the budget of "
                f"{max_pairs:,}; not used"
            )
            continue
        better, m = refined
        plan.rules.append(better)
        plan.pairs.append(m)
        plan.warnings.append(
            f"blocking rule {name}: about {_round_count(n):,} pairs, over the budget of "
            f"{max_pairs:,}; narrowed by {label.get(better[-1], better[-1])}"
        )
    if not plan.rules:
        raise MatchError(
            f"every blocking rule makes more than {max_pairs:,} record pairs on this data; "
            "add a more specific rule to the spec's matching.blocking"
        )
    return plan


def _refine(
    sdfs: Sequence[Any],
    rule: Rule,
    n: int,
    link_type: str,
    proportion: float,
    profiles: Mapping[str, ColumnProfile],
    refiners: Sequence[str],
    max_pairs: int,
) -> tuple[Rule, int] | None:
    if isinstance(rule, str):
        return None
    for extra in refiners:
        prof = profiles.get(extra)
        if extra in rule or prof is None or prof.filled == 0:
            continue
        candidate = (*rule, extra)
        m = count_pairs(sdfs, [candidate], link_type, proportion)[0]
        if m <= max_pairs:
            return candidate, m
    return None
