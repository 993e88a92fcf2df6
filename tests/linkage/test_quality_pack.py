"""Ranges on every overlap figure and the linkage-quality pack, from real linkages."""

from __future__ import annotations

import numpy as np
import pytest

from linkage.disclose import disclose
from linkage.encode import Encoder
from linkage.match import PERSON, link
from linkage.spec import load_spec
from linkage.stats import compute_figures
from linkage.synthetic import generate_partners
from tests.conftest import EXAMPLE_SPEC


@pytest.fixture(scope="module")
def linked() -> tuple:
    spec = load_spec(EXAMPLE_SPEC)
    encoder = Encoder(spec, bytes(range(32)))
    tables = generate_partners(2500, seed=21)
    extracts = {n: encoder.encode(t.drop(["person_id"])).table for n, t in tables.items()}
    result = link(extracts, spec)
    return spec, result, compute_figures(result.records, spec)


def test_every_overlap_figure_has_a_range_around_it(linked: tuple) -> None:
    _spec, _result, fig = linked
    overlap = [n for n in fig.counts if n.startswith("persons.")
               and n.split(".")[1] in ("total", "partner", "only", "both", "at_least_2", "at_least_3")
               and not n.endswith((".low", ".high"))]  # fmt: skip
    assert overlap
    for name in overlap:
        assert fig.counts[f"{name}.low"] <= fig.counts[name] <= fig.counts[f"{name}.high"], name
    # a looser threshold links more: fewer distinct people at the low end
    assert fig.counts["persons.total.low"] < fig.counts["persons.total.high"]


def test_quality_pack_counts_people_known_by_one_record(linked: tuple) -> None:
    _spec, result, fig = linked
    person = result.records.column(PERSON).to_numpy()
    _, sizes = np.unique(person, return_counts=True)
    total = fig.counts["quality.single_record.total"]
    assert total == int((sizes == 1).sum())
    by_partner = [
        v for n, v in fig.counts.items() if n.startswith("quality.single_record.partner.")
    ]
    assert sum(by_partner) == total
    for attr in ("age_band", "area", "need"):
        cells = [v for n, v in fig.counts.items()
                 if n.startswith(f"quality.single_record.by.{attr}.")]  # fmt: skip
        assert sum(cells) == total, attr

    for name, value in fig.counts.items():
        if name.startswith("quality.single_record.by."):
            group = "persons.by." + name.removeprefix("quality.single_record.by.") + ".count"
            assert value <= fig.counts[group], name


def test_ranges_and_quality_go_through_disclosure(linked: tuple) -> None:
    spec, _result, fig = linked
    release = disclose(fig, spec.disclosure)
    for name in ("persons.total.low", "persons.total.high", "quality.single_record.total"):
        assert name in release.figures
        value = release.figures[name]
        assert value is None or value % spec.disclosure.round_to == 0


def test_link_strength_counts_each_linked_person_once(linked: tuple) -> None:
    _spec, _result, fig = linked
    bands = [v for n, v in fig.counts.items() if n.startswith("quality.link_strength.")]
    assert len(bands) == 5
    assert sum(bands) == fig.counts["quality.multi_record.total"]
    assert (
        fig.counts["quality.multi_record.total"] + fig.counts["quality.single_record.total"]
        == fig.counts["persons.total"]
    )
    # a linked person's weakest link still passed the threshold: almost none are weak
    assert fig.counts["quality.link_strength.under_5"] <= sum(bands) // 2
