"""The enclave's repeated-identity check (service.submissions.validate): counted columnar,
exact where it matters. Tokens that agree in their first 8 bytes only (which the fast
64-bit count folds together) never reject a file; true repeats are counted exactly, per
full-identity key, and rows missing part of a key do not count."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linkage.spec import load_spec
from service.submissions.validate import (
    ExtractRejected,
    RepeatLimits,
    _fold,
    _most_repeated,
    _readable_share,
    _top_fold,
    check_extract,
)
from tests.conftest import EXAMPLE_SPEC

LIMITS = RepeatLimits(share=0.0, floor=5)  # at most 5 rows may share one identity


def _with(extract: Path, rows: range, **columns: list[bytes | None]) -> pa.Buffer:
    """``extract`` with ``columns`` overwritten on ``rows``, as bytes the enclave opens."""
    table = pq.read_table(extract)
    for name, values in columns.items():
        cells = table.column(name).to_pylist()
        for row, value in zip(rows, values, strict=True):
            cells[row] = value
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, pa.array(cells, table.schema.field(name).type))
    buffer = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(pq.read_metadata(extract).metadata), buffer)
    return pa.py_buffer(buffer.getvalue())


def _check(data: pa.Buffer) -> None:
    check_extract(data, load_spec(EXAMPLE_SPEC), None, LIMITS)


def test_tokens_sharing_their_first_bytes_are_not_repeats(
    hashed_extracts: dict[str, Path],
) -> None:
    prefix = b"\x01" * 8
    near = [prefix + i.to_bytes(8, "big") for i in range(40)]  # one 64-bit fold, 40 people
    _check(_with(hashed_extracts["housing"], range(40), t_nhs_number_exact=list(near)))


def test_a_repeated_nhs_number_is_counted_exactly(hashed_extracts: dict[str, Path]) -> None:
    token = bytes(range(16))
    prefix_only = [token[:8] + bytes([0xFF] * 7) + bytes([i]) for i in range(20)]
    data = _with(hashed_extracts["housing"], range(26),
                 t_nhs_number_exact=[token] * 6 + prefix_only)  # fmt: skip
    with pytest.raises(ExtractRejected) as refused:
        _check(data)
    assert refused.value.reason == "repeated_identity"
    # 6 identical rows, not the 26 that share the first 8 bytes
    assert "t_nhs_number_exact appears in 6 of" in refused.value.detail
    # at the limit it passes
    _check(_with(hashed_extracts["housing"], range(5), t_nhs_number_exact=[token] * 5))


def test_name_and_birth_date_together_name_one_person(hashed_extracts: dict[str, Path]) -> None:
    names = {"t_forename_exact": [b"\x81" * 16] * 8, "t_surname_exact": [b"\x82" * 16] * 8,
             "t_nhs_number_exact": [None] * 8}  # fmt: skip
    with pytest.raises(ExtractRejected, match="t_forename_exact \\+ t_surname_exact"):
        _check(_with(hashed_extracts["housing"], range(8), t_dob_full=[b"\x83" * 16] * 8, **names))
    # without a birth date, the same names are many people
    _check(_with(hashed_extracts["housing"], range(8), t_dob_full=[None] * 8, **names))


@settings(max_examples=60, deadline=None)
@given(
    people=st.lists(st.integers(0, 30), min_size=1, max_size=300),
    missing=st.lists(st.booleans(), min_size=300, max_size=300),
    cuts=st.lists(st.integers(1, 299), max_size=4),
    shared_prefix=st.booleans(),
)
def test_the_fast_count_is_the_exact_count_whatever_the_chunks_and_gaps(
    people: list[int], missing: list[bool], cuts: list[int], shared_prefix: bool
) -> None:
    """Over tables split into Arrow chunks anywhere, with missing values anywhere and
    tokens that may share their first 8 bytes, the count the validator acts on equals a
    plain group-by whenever it matters (above the limit), and never exceeds it."""

    def token(person: int, column: int) -> bytes:
        head = b"\x00" * 8 if shared_prefix else person.to_bytes(8, "big")
        return head + bytes([column]) + person.to_bytes(7, "big")

    rows = len(people)
    columns = {}
    for c, name in enumerate(("a", "b")):
        cells = [None if missing[(i + 7 * c) % 300] else token(p, c) for i, p in enumerate(people)]
        array = pa.array(cells, pa.binary(16))
        bounds = sorted({0, rows, *(x for x in cuts if x < rows)})
        columns[name] = pa.chunked_array(
            [array.slice(lo, hi - lo) for lo, hi in itertools.pairwise(bounds)],
            pa.binary(16),
        )
    table = pa.table(columns)
    # folded as row groups are: one slice at a time (the chunk cuts and the middle), so
    # slices that start inside a chunk (an offset) are folded too
    groups = sorted({*bounds, rows // 2})
    folds = [_fold(table.slice(lo, hi - lo), ["a", "b"]) for lo, hi in itertools.pairwise(groups)]
    exact = table.filter(pc.and_(pc.is_valid(table["a"]), pc.is_valid(table["b"])))
    grouped = exact.group_by(["a", "b"]).aggregate([([], "count_all")])
    truth = int(pc.max(grouped["count_all"]).as_py() or 0) if grouped.num_rows else 0
    for allowed in (0, 1, 3, 20):
        fast = _most_repeated(folds, ["a", "b"], allowed, lambda: table)
        assert fast <= max(truth, allowed)
        if truth > allowed:
            assert fast == truth


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(0, 5000),
    repeats=st.lists(st.tuples(st.integers(0, 2**64 - 1), st.integers(1, 400)), max_size=4),
    low_bits_only=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_the_bucket_count_finds_every_value_over_the_limit(
    rows: int, repeats: list[tuple[int, int]], low_bits_only: bool, seed: int
) -> None:
    """The bucket pre-count never hides a value repeated past the limit, whether values
    are spread (HMAC tokens) or differ only in their low bits (a hostile file)."""
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 2**63, rows, dtype=np.uint64)
    if low_bits_only:
        values = values & np.uint64(0xFFFF) | np.uint64(0xAB << 56)
    for value, times in repeats:
        values = np.concatenate([values, np.full(times, value, dtype=np.uint64)])
    rng.shuffle(values)
    valid = rng.random(len(values)) > 0.1
    kept = values[valid]
    truth = int(np.unique(kept, return_counts=True)[1].max()) if len(kept) else 0
    for allowed in (0, 5, 50, 300):
        count, value = _top_fold(values, valid, allowed)
        if truth > allowed:
            assert count == truth
            assert int((kept == np.uint64(value)).sum()) == truth
        else:
            assert count <= allowed


@settings(max_examples=60, deadline=None)
@given(
    cells=st.lists(st.one_of(st.none(), st.binary(min_size=16, max_size=16)), max_size=60),
    printable=st.lists(st.text("abcXYZ019 ~!", min_size=16, max_size=16), max_size=20),
    offset=st.integers(0, 10),
)
def test_the_plaintext_share_counts_values_with_every_byte_printable(
    cells: list[bytes | None], printable: list[str], offset: int
) -> None:
    """The byte-by-byte narrowing gives the share a whole-value test gives."""
    values = cells + [p.encode() for p in printable]
    array = pa.array(values, pa.binary(16)).slice(min(offset, len(values)))
    present = [v for v in array.to_pylist() if v is not None]
    expected = (
        sum(all(0x20 <= b <= 0x7E for b in v) for v in present) / len(present) if present else 0.0
    )
    assert _readable_share(array) == pytest.approx(expected)
