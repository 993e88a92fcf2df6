"""A project's run rules, fixed when the project is created.

Partners and analysts are adversaries of the disclosure controls (see DESIGN.md), so
what they can choose is limited here, once, by the admin who creates the project:

- **parameter menu**: an analyst picks the match threshold and the frequent-user
  threshold from a short list fixed at creation; anything else is refused. A binary
  search over a free threshold turns suppression into an oracle (issue 12, attack 3).
- **minimum extract size**: 50 rows by default. A partner who submits a handful of
  rows (or one: the target) makes every figure hinge on one person. 50 is over six
  times the default suppression threshold (8), so a partner's own totals are released
  as rounded counts of a real crowd, while the smallest services that take part (a
  voluntary-sector scheme) still clear it. It does not stop made-up filler rows: that
  is the perturbation's job; it stops the cheap one-row probe. Floor: 20.
- **rate limits**: 4 resubmissions per partner and 10 runs per project per 24 hours.
  A probe needs many release pairs (issue 12 measured 14 and 21 runs); honest use is a
  few corrections a day and a run after each.
- **output checking**: optionally a DPO (or one named checker) approves a release
  before the analyst sees it, as trusted research environments do.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from linkage.spec import Spec

__all__ = ["MIN_EXTRACT_ROWS_FLOOR", "RunRules", "resolve_rules", "rules_in_words", "run_rules"]

MIN_EXTRACT_ROWS_FLOOR = 20
_MENU_MAX = 5


class RunRules(BaseModel):
    """The run rules of one project (stored as JSON on the project row)."""

    model_config = ConfigDict(extra="forbid")

    match_thresholds: list[float | Literal["balanced"]] | None = Field(
        None,
        min_length=1,
        max_length=_MENU_MAX,
        description="match probability thresholds an analyst may choose, or 'balanced' "
        "(first = default); "
        "default: the spec's threshold only",
    )
    frequent_thresholds: list[int] | None = Field(
        None,
        min_length=1,
        max_length=_MENU_MAX,
        description="frequent-user thresholds an analyst may choose (first = default); "
        "default: the spec's only",
    )
    min_extract_rows: int = Field(
        50,
        ge=MIN_EXTRACT_ROWS_FLOOR,
        le=10_000_000,
        description="a partner extract with fewer rows is refused (at upload and in the enclave)",
    )
    resubmissions_per_period: int = Field(
        4, ge=0, le=1000, description="submissions beyond a partner's first, per period"
    )
    runs_per_period: int = Field(10, ge=1, le=1000, description="runs per project, per period")
    period_hours: int = Field(24, ge=1, le=24 * 31, description="the rate-limit window")
    output_checking: bool = Field(
        False, description="a release waits for a DPO's (or the checker's) approval"
    )
    output_checker: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="principal name who may approve releases besides DPOs",
    )

    @field_validator("match_thresholds")
    @classmethod
    def _probabilities(
        cls, value: list[float | Literal["balanced"]] | None
    ) -> list[float | Literal["balanced"]] | None:
        if value is not None:
            for v in value:
                if v != "balanced" and not 0.0 < v < 1.0:
                    raise ValueError(f"match threshold {v} is not between 0 and 1 (exclusive)")
            if len(set(value)) != len(value):
                raise ValueError("match thresholds are listed twice")
        return value

    @field_validator("frequent_thresholds")
    @classmethod
    def _positive(cls, value: list[int] | None) -> list[int] | None:
        if value is not None:
            for v in value:
                if not 1 <= v <= 100_000:
                    raise ValueError(f"frequent threshold {v} is not between 1 and 100000")
            if len(set(value)) != len(value):
                raise ValueError("frequent thresholds are listed twice")
        return value


def resolve_rules(rules: RunRules, spec: Spec) -> RunRules:
    """Fill the menus from the spec so that the stored rules never depend on it again."""
    return rules.model_copy(
        update={
            "match_thresholds": rules.match_thresholds or [spec.matching.threshold],
            "frequent_thresholds": rules.frequent_thresholds
            or [spec.statistics.frequent_threshold],
        }
    )


def run_rules(stored: str | None, spec: Spec) -> RunRules:
    """The rules of a project from its stored JSON (``{}``: the defaults)."""
    data: dict[str, Any] = json.loads(stored or "{}")
    return resolve_rules(RunRules.model_validate(data), spec)


def rules_in_words(rules: RunRules) -> list[str]:
    """The rules as a DPO reads them (the project page)."""
    per = f"per {rules.period_hours} hours"
    lines = [
        "match threshold: "
        + " or ".join(str(v) for v in rules.match_thresholds or [])
        + "; frequent users from "
        + " or ".join(str(v) for v in rules.frequent_thresholds or [])
        + " contacts (analysts choose only from these; fixed at creation)",
        f"each partner extract needs at least {rules.min_extract_rows:,} rows "
        "(checked at upload and again in the enclave)",
        f"at most {rules.resubmissions_per_period} resubmissions per partner and "
        f"{rules.runs_per_period} runs of the project {per}",
    ]
    if rules.output_checking:
        who = f"a DPO or {rules.output_checker}" if rules.output_checker else "a DPO"
        lines.append(f"output checking: every release waits until {who} approves it")
    else:
        lines.append("output checking: off (releases go to the analyst at once)")
    return lines
