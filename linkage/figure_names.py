"""Names of released figures that readers of a release rebuild (no data libraries).

``linkage.stats`` computes the figures with pandas and Splink's outputs; the results
pages and exports in the API only need to know what the figures are called, and must
not load pandas to do so.
"""

from __future__ import annotations

__all__ = ["cross_name"]


def cross_name(cohort: str, a: str, value_a: str, b: str, value_b: str) -> str:
    """The figure name of one cell of a two-way table (people, not records)."""
    return f"{cohort}.cross.{a}.{value_a}.{b}.{value_b}.count"
