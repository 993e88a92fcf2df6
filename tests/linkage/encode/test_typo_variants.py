"""Typo-tolerant tokens: any one mistyped or transposed id character, swapped names."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from linkage.encode import encode_table
from linkage.spec import parse_spec

KEY = bytes(range(32))
SPEC = parse_spec({
    "version": "1", "reference_date": "2026-01-01",
    "identifiers": [{"name": "forename", "type": "forename"},
                    {"name": "surname", "type": "surname"},
                    {"name": "ssn", "type": "id"}],
})  # fmt: skip
MASKS = ("t_ssn_mask1", "t_ssn_mask2", "t_ssn_mask3")
ids = st.text(alphabet="0123456789", min_size=4, max_size=14)


def _tokens(rows: list[dict[str, str]]) -> list[dict[str, bytes]]:
    table = pa.table({k: pa.array([r[k] for r in rows], pa.string()) for k in rows[0]})
    return encode_table(SPEC, KEY, table).table.to_pylist()


@settings(max_examples=60, deadline=None)
@given(ids, st.data())
def test_one_substituted_character_leaves_a_mask_agreeing(value: str, data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(value) - 1))
    other = data.draw(st.sampled_from([d for d in "0123456789" if d != value[i]]))
    typo = value[:i] + other + value[i + 1 :]
    a, b = _tokens([{"forename": "ann", "surname": "lee", "ssn": v} for v in (value, typo)])
    assert a["t_ssn_exact"] != b["t_ssn_exact"]
    assert sum(a[m] == b[m] for m in MASKS) == 1  # exactly the third holding the typo


@settings(max_examples=60, deadline=None)
@given(ids, st.data())
def test_a_transposition_keeps_the_sorted_token(value: str, data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(value) - 2))
    swapped = value[:i] + value[i + 1] + value[i] + value[i + 2 :]
    a, b = _tokens([{"forename": "ann", "surname": "lee", "ssn": v} for v in (value, swapped)])
    assert a["t_ssn_sorted"] == b["t_ssn_sorted"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(alphabet="ABCDEFGHIJKLMNOPRSTW", min_size=2, max_size=10),
                min_size=2, max_size=2, unique=True))  # fmt: skip
def test_swapped_names_agree_across_fields_only_through_swap(names: list[str]) -> None:
    first, last = names
    a, b = _tokens([{"forename": first, "surname": last, "ssn": "123456789"},
                    {"forename": last, "surname": first, "ssn": "123456789"}])  # fmt: skip
    assert a["t_forename_swap"] == b["t_surname_swap"]
    assert a["t_surname_swap"] == b["t_forename_swap"]
    # the exact tokens keep their own domains: a forename never equals a surname
    assert a["t_forename_exact"] != b["t_surname_exact"]


def test_short_ids_get_no_masks() -> None:
    (row,) = _tokens([{"forename": "ann", "surname": "lee", "ssn": "123"}])
    assert row["t_ssn_exact"] is not None
    assert all(row[m] is None for m in (*MASKS, "t_ssn_sorted"))
