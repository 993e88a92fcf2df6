"""What a release says about the linkage model, and why some of it is not there.

The m/u probabilities and the match-weight histogram count record pairs, not people:
one person (or a partner's hostile filler records) can move them by an unbounded
amount, and neither disclosure mechanism covers them, so ``linkage.disclose`` withholds
them. A reader is told so in words, never shown an empty chart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["withheld_diagnostics"]

_WHY = (
    "they count pairs of records, not people, so one person (or a partner's made-up "
    "records) can move them by any amount, and neither the cell key method nor "
    "differential privacy can protect them"
)


def withheld_diagnostics(released: Mapping[str, Any]) -> list[str]:
    """Sentences naming each model diagnostic the release withheld, and why (empty when
    nothing was withheld)."""
    diagnostics = released.get("diagnostics") or {}
    withheld = []
    if not diagnostics.get("comparisons"):
        withheld.append("the m and u probabilities of each comparison level")
    if not diagnostics.get("match_weight_histogram"):
        withheld.append("the match-weight histogram of record pairs")
    if not withheld:
        return []
    lines = [f"Withheld by the disclosure rules: {' and '.join(withheld)}, because {_WHY}."]
    if any(str(n).startswith("quality.link_strength.") for n in released.get("figures", {})):
        lines.append(
            "The linkage-quality table shows the disclosure-controlled alternative: people "
            "(not pairs) by the match weight of their weakest link."
        )
    return lines
