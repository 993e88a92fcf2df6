"""Boundaries files: a bad one is refused in one sentence; suppressed areas are hatched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.results import render
from service.results.maps import BoundariesError, choropleth, load_boundaries


def _square(area: str, x: float) -> dict[str, object]:
    ring = [[x, 0], [x + 1, 0], [x + 1, 1], [x, 1], [x, 0]]
    return {
        "type": "Feature",
        "properties": {"area": area},
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }


@pytest.mark.parametrize(
    ("text", "sentence"),
    [
        ("{oops", "not valid JSON"),
        ('{"type": "Feature"}', "not a GeoJSON FeatureCollection"),
        ('{"type": "FeatureCollection", "features": []}', "no features"),
        (
            '{"type": "FeatureCollection", "features": [{"properties": {}, "geometry": null}]}',
            "feature 0 needs",
        ),
    ],
)
def test_bad_boundaries_are_refused_in_one_sentence(
    tmp_path: Path, text: str, sentence: str
) -> None:
    path = tmp_path / "b.geojson"
    path.write_text(text)
    with pytest.raises(BoundariesError, match=sentence) as info:
        load_boundaries(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_suppressed_areas_are_hatched_not_zero(tmp_path: Path) -> None:
    path = tmp_path / "b.geojson"
    path.write_text(
        json.dumps(
            {"type": "FeatureCollection", "features": [_square("LS1", 0), _square("LS2", 1)]}
        )
    )
    release = {"run_id": "r", "released_at": "2026-11-23", "policy": {}, "attributes": ["area"],
               "figures": {"persons.by.area.LS1.count": 40, "persons.by.area.LS2.count": None},
               "suppressed_reason": {"persons.by.area.LS2.count": "primary"}}  # fmt: skip
    svg = render(choropleth(release, load_boundaries(path)), "svg").decode()
    assert "LS2" in svg and "*p" in svg and "<pattern" in svg  # the hatch of a suppressed area


def test_a_district_or_a_sector_file_maps_the_breakdown_it_names(tmp_path: Path) -> None:
    from service.results.maps import mappable

    release = {"attributes": ["area", "sector", "need"], "released_at": "2026-11-23",
               "figures": {"persons.by.area.LS1.count": 40, "persons.by.area.LS2.count": 20,
                           "persons.by.sector.LS1 1.count": 25, "persons.by.sector.LS1 2.count": None,
                           "persons.by.need.housing.count": 30},
               "suppressed_reason": {"persons.by.sector.LS1 2.count": "primary"}}  # fmt: skip
    files = {}
    for kind, names in (("district", ["LS1", "LS2"]), ("sector", ["LS1 1", "LS1 2", "LS1 3"])):
        path = tmp_path / f"{kind}.geojson"
        features = [_square(n, i) for i, n in enumerate(names)]
        for f in features:  # keyed by the property the file's publisher uses
            f["properties"] = {kind: f["properties"]["area"]}  # type: ignore[index]
        path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
        files[kind] = load_boundaries(path)
    assert mappable(release, files["district"]) == ["area"]
    assert mappable(release, files["sector"]) == ["sector"]
    svg = render(choropleth(release, files["sector"], "sector"), "svg").decode()
    assert "Everyone by sector" in svg and "LS1 3" in svg
