"""Presenting released results: tables, CSV rows and the UpSet / heatmap chart.

Works only on the released JSON (figures already disclosure-controlled); suppressed
figures are shown as ``*``.
"""

from __future__ import annotations

import csv
import io
from itertools import combinations
from pathlib import Path
from typing import Any

__all__ = ["csv_text", "overlap_rows", "plot_results", "show"]

SUPPRESSED = "*"


def show(value: Any) -> str:
    if value is None:
        return SUPPRESSED
    if isinstance(value, float):
        return f"{value:.1f}"
    return f"{value:,}"


def overlap_rows(released: dict[str, Any], cohort: str = "persons") -> list[tuple[str, Any]]:
    """(label, value) rows of the overlap table for one cohort (persons or frequent)."""
    f = released["figures"]
    partners = released["partners"]
    rows: list[tuple[str, Any]] = [("distinct people", f.get(f"{cohort}.total"))]
    rows += [(f"known to {p}", f.get(f"{cohort}.partner.{p}")) for p in partners]
    rows += [(f"known to both {a} and {b}", f.get(f"{cohort}.both.{'+'.join(sorted((a, b)))}"))
             for a, b in combinations(partners, 2)]  # fmt: skip
    rows += [(f"known to >= {k} partners", f.get(f"{cohort}.at_least_{k}"))
             for k in (2, 3) if f"{cohort}.at_least_{k}" in f]  # fmt: skip
    return rows


def csv_text(released: dict[str, Any]) -> str:
    """Every released figure as ``figure,value`` (suppressed left empty)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["figure", "value"])
    for name, value in sorted(released["figures"].items()):
        writer.writerow([name, "" if value is None else value])
    return buf.getvalue()


def plot_results(released: dict[str, Any], path: Path) -> None:
    """An UpSet chart (exclusive combinations) beside the pairwise overlap heatmap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = released["figures"]
    partners = sorted(released["partners"])
    combos = [
        (name[len("persons.only.") :], v)
        for name, v in f.items()
        if name.startswith("persons.only.")
    ]
    combos.sort(key=lambda cv: -(cv[1] or 0))
    fig = plt.figure(figsize=(13, 5.5))
    grid = fig.add_gridspec(
        2, 2, width_ratios=[2.2, 1], height_ratios=[2, 1], wspace=0.3, hspace=0.05
    )
    bars, dots, heat = (
        fig.add_subplot(grid[0, 0]),
        fig.add_subplot(grid[1, 0]),
        fig.add_subplot(grid[:, 1]),
    )
    xs = range(len(combos))
    heights = [v or 0 for _, v in combos]
    bars.bar(xs, heights, color=["#bbbbbb" if v is None else "#2b6cb0" for _, v in combos])
    for x, (_, v) in zip(xs, combos, strict=True):
        bars.text(x, (v or 0), show(v), ha="center", va="bottom", fontsize=7)
    bars.set_ylabel("people (released)")
    bars.set_xticks([])
    bars.set_title("People known to exactly these partners (* = suppressed)")
    for x, (combo, _) in enumerate(combos):
        members = combo.split("+")
        ys = [partners.index(p) for p in members]
        dots.scatter([x] * len(partners), range(len(partners)), color="#dddddd", s=30)
        dots.scatter([x] * len(ys), ys, color="#222222", s=30)
        if len(ys) > 1:
            dots.plot([x, x], [min(ys), max(ys)], color="#222222")
    dots.set_yticks(range(len(partners)), partners)
    dots.set_xticks([])
    dots.set_xlim(bars.get_xlim())
    matrix = [[f.get(f"persons.partner.{a}") if a == b else f.get(f"persons.both.{'+'.join(sorted((a, b)))}")
               for b in partners] for a in partners]  # fmt: skip
    heat.imshow([[v or 0 for v in row] for row in matrix], cmap="Blues")
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            heat.text(j, i, show(v), ha="center", va="center", fontsize=8)
    heat.set_xticks(range(len(partners)), partners, rotation=45, ha="right")
    heat.set_yticks(range(len(partners)), partners)
    heat.set_title("Known to both (pairwise, inclusive)")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
