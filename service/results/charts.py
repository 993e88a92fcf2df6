"""Charts of a release, drawn on the server with matplotlib (PNG, SVG or PDF).

Every chart has a title, the release date and a source note. A suppressed figure is
drawn as suppressed (a hatched grey stub marked ``*``), never as a zero-height bar.
Uses matplotlib's object API (no pyplot state), so web requests can draw concurrently.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.results.tables import (
    COHORTS,
    breakdown_values,
    combinations_of,
    show,
    status_of,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# matplotlib is imported where a chart is drawn, not here: the API imports this module
# for its routes, and matplotlib (with numpy) would double the API process's memory

__all__ = ["FORMATS", "ChartError", "available_charts", "chart", "plot_results", "render"]

FORMATS = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf"}
_BLUE, _GREY, _INK = "#2b6cb0", "#a0aec0", "#1a202c"
_MARK = {"suppressed-primary": "*p", "suppressed-secondary": "*s", "suppressed": "*"}


class ChartError(ValueError):
    """A chart that cannot be drawn: unknown name, format, or nothing in the release."""


def _source(released: Mapping[str, Any]) -> str:
    policy = released.get("policy", {})
    noise = ("differential-privacy noise, then " if policy.get("dp") else
             "cell-key noise, then " if policy.get("cell_key") else "")  # fmt: skip
    return (f"Source: pprl linkage run {str(released.get('run_id', ''))[:8]}, released "
            f"{str(released.get('released_at', ''))[:10]}. Disclosure-controlled: {noise}counts below "
            f"{policy.get('suppress_below')} suppressed, others rounded to {policy.get('round_to')}; "
            "* = suppressed (p primary, s secondary).")  # fmt: skip


def _frame(released: Mapping[str, Any], title: str, size: tuple[float, float]) -> Figure:
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    fig.suptitle(title, fontsize=13, fontweight="bold", x=0.01, ha="left")
    # wrapped at the figure's width so the note is never cut off on narrow charts
    fig.supxlabel(_source(released), fontsize=7.5, color="#4a5568", x=0.01, ha="left", wrap=True)
    return fig


def _bars(ax: Any, labels: list[str], names: list[str], released: Mapping[str, Any],
          horizontal: bool = False) -> None:  # fmt: skip
    """Bars of released values; suppressed ones as hatched stubs labelled *p / *s."""
    values = [released["figures"].get(n) for n in names]
    top = max([v for v in values if v is not None] or [1])
    stub = max(top * 0.04, 1)
    for i, (name, value) in enumerate(zip(names, values, strict=True)):
        status = status_of(released, name)
        height = stub if value is None else value
        style: dict[str, Any] = ({"color": "white", "edgecolor": _GREY, "hatch": "///"} if value is None
                                 else {"color": _BLUE})  # fmt: skip
        text = _MARK.get(status, "*") if value is None else show(value)
        if horizontal:
            ax.barh(i, height, **style)
            ax.text(height + top * 0.01, i, text, va="center", fontsize=8, color=_INK)
        else:
            ax.bar(i, height, **style)
            ax.text(i, height + top * 0.01, text, ha="center", va="bottom", fontsize=7, color=_INK)
    if horizontal:
        ax.set_yticks(range(len(labels)), labels)
        ax.invert_yaxis()
        ax.set_xlim(0, top * 1.15)
    else:
        ax.set_ylim(0, top * 1.15)
    ax.spines[["top", "right"]].set_visible(False)


def _ranges(ax: Any, names: list[str], released: Mapping[str, Any]) -> None:
    """Whiskers for the plausible range (stricter to looser match threshold) where released."""
    f = released["figures"]
    for i, name in enumerate(names):
        value, low, high = f.get(name), f.get(f"{name}.low"), f.get(f"{name}.high")
        if value is not None and low is not None and high is not None and high > low:
            ax.plot([i, i], [low, high], color=_INK, linewidth=1)
            ax.plot([i - 0.15, i + 0.15], [low, low], color=_INK, linewidth=1)
            ax.plot([i - 0.15, i + 0.15], [high, high], color=_INK, linewidth=1)


def upset(released: Mapping[str, Any], cohort: str = "persons") -> Figure:
    """UpSet chart: people known to exactly each combination of partners."""
    from matplotlib.patches import Patch

    partners = sorted(released["partners"])
    prefix = f"{cohort}.only."
    combos = combinations_of(released, cohort)
    if not combos:
        raise ChartError(f"the release has no {cohort} combinations to draw")
    combos.sort(key=lambda c: (-(released["figures"].get(prefix + c) or 0), c))
    fig = _frame(released, f"{COHORTS.get(cohort, cohort)}: people known to exactly these partners",
                 (max(8.0, 0.45 * len(combos) + 3), 6.0))  # fmt: skip
    bars, dots = fig.subplots(2, 1, sharex=True, height_ratios=[2.2, 1])
    _bars(bars, combos, [prefix + c for c in combos], released)
    _ranges(bars, [prefix + c for c in combos], released)
    bars.set_ylabel("people")
    bars.set_xticks([])
    for x, combo in enumerate(combos):
        ys = [partners.index(p) for p in combo.split("+") if p in partners]
        dots.scatter([x] * len(partners), range(len(partners)), color="#e2e8f0", s=40)
        dots.scatter([x] * len(ys), ys, color=_INK, s=40)
        if len(ys) > 1:
            dots.plot([x, x], [min(ys), max(ys)], color=_INK)
    dots.set_yticks(range(len(partners)), partners)
    dots.set_xticks([])
    dots.spines[["top", "right", "bottom"]].set_visible(False)
    bars.legend(handles=[Patch(color=_BLUE, label="released"),
                         Patch(facecolor="white", edgecolor=_GREY, hatch="///", label="suppressed")],
                loc="upper right", fontsize=8, frameon=False)  # fmt: skip
    return fig


def heatmap(released: Mapping[str, Any], cohort: str = "persons") -> Figure:
    """Pairwise overlap: known to both partners (diagonal: known to the partner)."""
    partners = sorted(released["partners"])
    f = released["figures"]
    names = [[f"{cohort}.partner.{a}" if a == b else f"{cohort}.both.{'+'.join(sorted((a, b)))}"
              for b in partners] for a in partners]  # fmt: skip
    size = max(5.5, 1.1 * len(partners) + 2.5)
    fig = _frame(
        released, f"{COHORTS.get(cohort, cohort)}: known to both partners", (size + 1, size)
    )
    ax = fig.subplots()
    values = [[f.get(n) for n in row] for row in names]
    top = max([v for row in values for v in row if v is not None] or [1])
    shade = [[(v if v is not None else float("nan")) for v in row] for row in values]
    image = ax.imshow(shade, cmap="Blues", vmin=0, vmax=top)
    for i, row in enumerate(names):
        for j, name in enumerate(row):
            v = f.get(name)
            if v is None:
                ax.add_patch(_hatched(j, i))
                ax.text(j, i, _MARK.get(status_of(released, name), "*"), ha="center", va="center",
                        fontsize=10, color=_INK)  # fmt: skip
            else:
                # white on the dark half of the colour scale, dark ink on the light half
                ax.text(j, i, show(v), ha="center", va="center", fontsize=9,
                        color="white" if v > top * 0.55 else _INK, fontweight="bold")  # fmt: skip
    ax.set_xticks(range(len(partners)), partners, rotation=35, ha="right")
    ax.set_yticks(range(len(partners)), partners)
    fig.colorbar(image, ax=ax, shrink=0.7, label="people")
    return fig


def _hatched(x: int, y: int) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.5, y - 0.5), 1, 1, facecolor="white", edgecolor=_GREY, hatch="///")


def breakdown(released: Mapping[str, Any], attr: str, cohort: str = "persons") -> Figure:
    """People of one cohort by one attribute (values in natural order: LS2 before LS10)."""
    values = breakdown_values(released, attr)
    if not values:
        raise ChartError(f"the release has no breakdown by {attr}")
    label = attr.replace("_", " ")
    fig = _frame(released, f"{COHORTS.get(cohort, cohort)} by {label}",
                 (9.0, max(3.5, 0.32 * len(values) + 1.8)))  # fmt: skip
    ax = fig.subplots()
    _bars(ax, values, [f"{cohort}.by.{attr}.{v}.count" for v in values], released, horizontal=True)
    ax.set_xlabel("people")
    return fig


def histogram(released: Mapping[str, Any]) -> Figure:
    """Model diagnostic: candidate pairs by match weight (as released, suppressed where small)."""
    bins = (released.get("diagnostics") or {}).get("match_weight_histogram") or []
    if not bins:
        raise ChartError("the release includes no match-weight histogram")
    fig = _frame(released, "Model diagnostic: candidate pairs by match weight", (9.0, 4.5))
    ax = fig.subplots()
    # bins are {"from", "to", "pairs"}; the outer bins are open (None): draw them 5 wide
    lows = [b.get("from") if b.get("from") is not None else float(b["to"]) - 5 for b in bins]
    highs = [
        b.get("to") if b.get("to") is not None else float(lo) + 5
        for lo, b in zip(lows, bins, strict=True)
    ]
    for lo, hi, b in zip(lows, highs, bins, strict=True):
        pairs = b.get("pairs")
        if pairs is None:
            ax.bar(lo, 1, width=hi - lo, align="edge", color="white", edgecolor=_GREY, hatch="///")
        else:
            ax.bar(lo, pairs, width=hi - lo, align="edge", color=_BLUE, edgecolor="white")
    ax.set_yscale("symlog")
    ax.set_xlabel("match weight (log2 Bayes factor)")
    ax.set_ylabel("pairs (released)")
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def available_charts(released: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(name, title) of every chart this release supports."""
    charts = [("upset-persons", "Everyone: exact combinations (UpSet)"),
              ("heatmap-persons", "Everyone: pairwise overlap"),
              ("upset-frequent", "Frequent users: exact combinations (UpSet)"),
              ("heatmap-frequent", "Frequent users: pairwise overlap")]  # fmt: skip
    for attr in released.get("attributes", []):
        charts.append((f"by-{attr}-persons", f"Everyone by {attr.replace('_', ' ')}"))
        charts.append((f"by-{attr}-frequent", f"Frequent users by {attr.replace('_', ' ')}"))
    if (released.get("diagnostics") or {}).get("match_weight_histogram"):
        charts.append(("match-weights", "Model diagnostic: match weights"))
    return charts


def chart(released: Mapping[str, Any], name: str) -> Figure:
    """The chart called ``name`` (see :func:`available_charts`)."""
    if name not in dict(available_charts(released)):
        raise ChartError(f"no chart called {name!r} for this release")
    if name == "match-weights":
        return histogram(released)
    kind, _, cohort = name.rpartition("-")
    if kind == "upset":
        return upset(released, cohort)
    if kind == "heatmap":
        return heatmap(released, cohort)
    return breakdown(released, kind[len("by-") :], cohort)


def render(fig: Figure, fmt: str) -> bytes:
    """The figure as PNG, SVG (text kept as text) or PDF bytes."""
    if fmt not in FORMATS:
        raise ChartError(f"unknown chart format {fmt!r}: choose png, svg or pdf")
    import matplotlib

    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "pprl"}):
        fig.savefig(buf, format=fmt, dpi=120, metadata={"Date": None} if fmt == "svg" else None)
    return buf.getvalue()


def plot_results(released: Mapping[str, Any], path: Path, name: str = "upset-persons") -> None:
    """Write one chart to ``path``; its extension (.png, .svg, .pdf) picks the format.

    Raises :class:`ChartError` with one sentence for an unknown extension or a missing
    folder, before anything is drawn.
    """
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ChartError(f"{path}: unknown chart file extension {path.suffix or '(none)'!r}; "
                         "use .png, .svg or .pdf")  # fmt: skip
    if not path.parent.is_dir():
        raise ChartError(f"{path}: the folder {path.parent} does not exist")
    data = render(chart(released, name), fmt)
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise ChartError(
            f"{path}: cannot write the chart ({exc.strerror or 'write failed'})"
        ) from None
