"""Cohort statistics from linked records: exact counts, and sizes that stay tractable."""

from __future__ import annotations

import time

import pyarrow as pa

from linkage.match import PARTNER, PERSON
from linkage.spec import Spec
from linkage.stats import compute_figures


def _records(rows: list[tuple[str, int, int]]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                PARTNER: p,
                PERSON: person,
                "a_age_band": "25-34",
                "a_area": "LS1",
                "a_contacts": contacts,
                "a_need": "housing",
            }
            for p, person, contacts in rows
        ]
    )


def test_exact_overlap_counts(spec: Spec) -> None:
    rows = [
        ("a", 1, 5),
        ("b", 1, 6),
        ("a", 2, 1),
        ("a", 2, 1),
        ("b", 3, 20),
        ("c", 3, 1),
        ("a", 3, 1),
    ]
    fig = compute_figures(_records(rows), spec, frequent_threshold=10)
    c = fig.counts
    assert c["persons.total"] == 3
    assert (c["persons.partner.a"], c["persons.partner.b"], c["persons.partner.c"]) == (3, 2, 1)
    assert c["persons.only.a"] == 1 and c["persons.only.a+b"] == 1 and c["persons.only.a+b+c"] == 1
    assert (
        c["persons.both.a+b"] == 2 and c["persons.at_least_2"] == 2 and c["persons.at_least_3"] == 1
    )
    assert c["frequent.total"] == 2  # person 1 (11 contacts) and person 3 (22)
    assert c["persons.by.age_band.25-34.count"] == 3
    assert fig.means["persons.by.age_band.25-34.mean_contacts"] == (11 + 2 + 22) / 3


def test_many_partners_list_only_the_combinations_that_occur(spec: Spec) -> None:
    rows = [
        (f"p{i:02d}", person, 1)
        for person in range(500)
        for i in range(20)
        if (person + i) % 7 == 0
    ]
    started = time.perf_counter()
    fig = compute_figures(_records(rows), spec)
    assert time.perf_counter() - started < 10
    only = [n for n in fig.counts if n.startswith("persons.only.")]
    assert 0 < len(only) < 2**20 and all(fig.counts[n] > 0 for n in only)
    assert sum(fig.counts[n] for n in only) == fig.counts["persons.total"] == 500


def test_a_sector_breakdown_and_no_sector_by_need_table(spec: Spec) -> None:
    from linkage.spec import parse_spec

    data = spec.model_dump(mode="json", exclude_none=True)
    data["attributes"].append({"name": "sector", "kind": "area", "source": "postcode",
                               "level": "sector"})  # fmt: skip
    sectors = parse_spec(data)
    table = _records([("a", 1, 5), ("b", 1, 6), ("a", 2, 1), ("b", 3, 2)])
    table = table.append_column("a_sector", pa.array(["LS1 1", "LS1 1", "LS1 2", None]))
    fig = compute_figures(table, sectors, frequent_threshold=10)
    c = fig.counts
    assert (c["persons.by.sector.LS1 1.count"], c["persons.by.sector.LS1 2.count"]) == (1, 1)
    assert c["persons.by.sector.unknown.count"] == 1
    assert ("sector", "need") not in fig.crosses and ("area", "need") in fig.crosses
    # one more breakdown cell for each person in persons, multi or single, frequent or not,
    # and in the quality pack's single-record breakdown; no more two-way cells
    assert fig.cells_per_person() == compute_figures(table, spec, 10).cells_per_person() + 4
