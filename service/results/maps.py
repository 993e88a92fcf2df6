"""A choropleth of people by area from a boundaries file the operator supplies (GeoJSON).

Each feature names its area in the property ``area`` (or ``district``, ``sector``, ``name``,
``code``) and carries a Polygon or MultiPolygon: postcode districts (``LS2``) or sectors
(``LS2 7``), whichever the release's breakdown holds (:func:`mappable`). Drawn with
matplotlib on the server (no tiles, no CDN); areas whose figure is suppressed are hatched
and marked, never coloured as zero.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.results.charts import ChartError, _frame
from service.results.tables import COHORTS, status_of

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["BoundariesError", "choropleth", "load_boundaries", "mappable"]

_KEYS = ("area", "district", "sector", "name", "code")


class BoundariesError(ValueError):
    """A boundaries file that cannot be used: one sentence naming the file and the problem."""


def load_boundaries(path: Path) -> dict[str, list[list[tuple[float, float]]]]:
    """Area name -> its outer rings, from a GeoJSON FeatureCollection."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise BoundariesError(f"{path}: cannot read the boundaries file ({exc.strerror})") from None
    except ValueError:
        raise BoundariesError(f"{path}: not valid JSON") from None
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection":
        raise BoundariesError(f"{path}: not a GeoJSON FeatureCollection")
    areas: dict[str, list[list[tuple[float, float]]]] = {}
    for i, feature in enumerate(data.get("features") or []):
        props = feature.get("properties") or {}
        name = next((str(props[k]) for k in _KEYS if props.get(k)), None)
        geometry = feature.get("geometry") or {}
        kind, coords = geometry.get("type"), geometry.get("coordinates")
        if name is None or kind not in ("Polygon", "MultiPolygon") or not coords:
            raise BoundariesError(
                f"{path}: feature {i} needs a property 'area' and a Polygon or MultiPolygon"
            )
        polygons = [coords] if kind == "Polygon" else coords
        rings = areas.setdefault(name, [])
        for polygon in polygons:
            rings.append([(float(x), float(y)) for x, y, *_ in polygon[0]])
    if not areas:
        raise BoundariesError(f"{path}: no features")
    return areas


def mappable(
    released: Mapping[str, Any], boundaries: Mapping[str, list[list[tuple[float, float]]]]
) -> list[str]:
    """The release's attributes whose breakdown names at least one area of the boundaries
    (a district file maps a district attribute, a sector file a sector one)."""
    f = released["figures"]
    return [attr for attr in released.get("attributes", [])
            if any(f"persons.by.{attr}.{area}.count" in f for area in boundaries)]  # fmt: skip


def choropleth(
    released: Mapping[str, Any],
    boundaries: Mapping[str, list[list[tuple[float, float]]]],
    attr: str = "area",
    cohort: str = "persons",
) -> Figure:
    """People of ``cohort`` per area, coloured by the released count."""
    import matplotlib
    from matplotlib.patches import Patch, Polygon

    f = released["figures"]
    names = {a: f"{cohort}.by.{attr}.{a}.count" for a in boundaries}
    values = {a: f.get(n) for a, n in names.items() if n in f}
    if not values:
        raise ChartError(f"the boundaries name no area of the release's {attr} breakdown")
    top = max([v for v in values.values() if v is not None] or [1])
    cmap = matplotlib.colormaps["Blues"]
    fig = _frame(released, f"{COHORTS.get(cohort, cohort)} by {attr.replace('_', ' ')}", (8.5, 8.0))
    ax = fig.subplots()
    for area, rings in boundaries.items():
        value = values.get(area)
        known = area in values
        for ring in rings:
            if value is not None:
                style: dict[str, Any] = {
                    "facecolor": cmap(0.15 + 0.85 * value / top),
                    "edgecolor": "white",
                }
            elif known:  # suppressed: hatched, never the colour of zero
                style = {"facecolor": "white", "edgecolor": "#718096", "hatch": "///"}
            else:
                style = {"facecolor": "#edf2f7", "edgecolor": "white"}
            ax.add_patch(Polygon(ring, closed=True, linewidth=0.8, **style))
        xs = [x for ring in rings for x, _ in ring]
        ys = [y for ring in rings for _, y in ring]
        label = (
            area
            if value is None and not known
            else (
                f"{area}\n{value:,}"
                if value is not None
                else f"{area}\n*{status_of(released, names[area])[11:12]}"
            )
        )
        ax.text(sum(xs) / len(xs), sum(ys) / len(ys), label, ha="center", va="center", fontsize=7,
                color="white" if value is not None and value > top * 0.6 else "#1a202c")  # fmt: skip
    ax.autoscale_view()
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.legend(handles=[Patch(facecolor=cmap(0.9), label=f"more people (up to {top:,})"),
                       Patch(facecolor=cmap(0.2), label="fewer people"),
                       Patch(facecolor="white", edgecolor="#718096", hatch="///", label="suppressed"),
                       Patch(facecolor="#edf2f7", label="not in the release")],
              loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)  # fmt: skip
    return fig
