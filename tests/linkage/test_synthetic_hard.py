"""The hard synthetic set really holds the hard cases it promises, with its truth."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from linkage.encode import encode_table
from linkage.spec import parse_spec
from linkage.synthetic.hard import HARD_SPEC, generate_hard_partners


@pytest.fixture(scope="module", params=[1, 2])
def tables(request: pytest.FixtureRequest) -> dict:
    return generate_hard_partners(4000, seed=request.param)


def test_partners_differ_in_size_and_coverage(tables: dict) -> None:
    sizes = sorted(t.num_rows for t in tables.values())
    assert len(sizes) == 5 and sizes[-1] > 50 * sizes[0]
    filled = {n: 1 - t.column("ssn").null_count / t.num_rows for n, t in tables.items()}
    assert max(filled.values()) > 0.9 and min(filled.values()) < 0.4


def test_one_zip_holds_over_half_of_one_partner(tables: dict) -> None:
    shelter = tables["shelter"].column("zip").to_pylist()
    assert Counter(shelter).most_common(1)[0][1] > 0.5 * len(shelter)


def test_twins_swaps_married_names_and_copied_ids_occur(tables: dict) -> None:
    rows = [r | {"partner": n} for n, t in tables.items() for r in t.to_pylist()]
    by_person: dict[int, list[dict]] = {}
    for r in rows:
        by_person.setdefault(r["person_id"], []).append(r)
    swapped = married = 0
    for recs in by_person.values():
        for a in recs:
            for b in recs:
                swapped += a["forename"] == b["surname"] and a["surname"] == b["forename"]
                married += a["forename"] == b["forename"] and a["surname"] != b["surname"]
    assert swapped > 0 and married > 0
    # copied ids: one id held by two different people
    holders: dict[str, set[int]] = {}
    for r in rows:
        if r["ssn"]:
            holders.setdefault(r["ssn"], set()).add(r["person_id"])
    assert any(len(p) > 1 for p in holders.values())
    # twins: two people, same date of birth and surname in one extract
    clinic = tables["clinic"].to_pylist()
    keys = Counter((r["surname"], r["date_of_birth"]) for r in clinic if r["date_of_birth"])
    ids = {}
    twins = 0
    for r in clinic:
        key = (r["surname"], r["date_of_birth"])
        if keys.get(key, 0) > 1:
            twins += key in ids and ids[key] != r["person_id"]
            ids[key] = r["person_id"]
    assert twins > 0


def test_every_partner_hashes_under_the_declared_date_formats(tables: dict) -> None:
    spec = parse_spec(HARD_SPEC)
    for name, table in tables.items():
        result = encode_table(spec, bytes(range(32)), table.drop(["person_id"]))
        assert result.invalid_counts["dob"] <= 0.02 * table.num_rows, name
        assert result.table.num_rows == table.num_rows
    assert np.all([t.column("person_id").null_count == 0 for t in tables.values()])
