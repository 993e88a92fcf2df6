"""Comparing two releases uses released figures only: a change exists exactly where both
runs released the figure, and small changes are flagged as within the noise."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings

from service.results.compare import compare, noise_band
from tests.service.results.releases import releases


@given(releases(), releases())
@settings(max_examples=60, deadline=None)
def test_changes_exist_only_where_both_runs_released_the_figure(
    a: dict[str, Any], b: dict[str, Any]
) -> None:
    changes = compare(a, b)
    names = [c.figure for c in changes]
    assert len(names) == len(set(names))
    assert set(names) == set(a["figures"]) & set(b["figures"])
    band = noise_band(b["policy"])
    for c in changes:
        assert (c.before, c.after) == (a["figures"][c.figure], b["figures"][c.figure])
        if c.before is None or c.after is None:
            assert c.change is None and not c.within_noise(band)
        else:
            assert abs(c.change - (c.after - c.before)) < 0.051
            assert c.within_noise(band) == (
                abs(c.change) <= band and not c.figure.endswith("mean_contacts")
            )


def test_noise_band_counts_both_perturbations_and_one_rounding_step() -> None:
    assert noise_band({"round_to": 5, "cell_key": {"max_perturbation": 10}}) == 25
    assert noise_band({"round_to": 5}) == 5
