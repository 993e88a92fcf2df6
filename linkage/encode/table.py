"""Encode one batch of a partner's extract: normalise, derive variants, hash, attributes.

Work is column-wise and on *distinct* values: each input column is dictionary-encoded,
every distinct raw value is normalised and hashed once, and the results are gathered back
to rows with ``take``. Most variants (sex, year, initial, district, phonetic code...) have
few distinct values, and a per-(field, variant) cache carries tokens across batches, so
the HMAC count per record is small.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from linkage.encode.bloom import BloomEncoder
from linkage.encode.tokens import TokenMaker, token_domain
from linkage.errors import InputError
from linkage.normalise import (
    name_variants,
    normalise_generic,
    normalise_generic_postcode,
    normalise_name,
    normalise_sex,
    uk_postcode_variants,
)
from linkage.normalise.dates import date_variants_cached, read_date_cached
from linkage.normalise.nhs import normalise_nhs_numbers
from linkage.normalise.postcodes import uk_postcode_variants_bulk
from linkage.spec import (
    ROW_REF_COLUMN,
    AttributeSpec,
    IdentifierSpec,
    Spec,
    attribute_column,
    bloom_column,
    output_schema,
    token_column,
)

__all__ = ["EncodeResult", "Encoder", "encode_table"]

_CACHE_LIMIT = 100_000  # tokens memoised per (field, variant); bounds memory, keeps hits on names
_MEMO_PROBE = 10_000  # distinct values in a batch before the memo's usefulness is judged
REJECT_NO_IDENTIFIER = "no usable identifier: every identifier is empty or invalid"
REJECT_BLANK = "blank row"
REJECT_TOTAL = "total row: no identifier, only figures"
_WHOLE_NUMBER = re.compile(r"^\s*\+?(\d+)(?:\.0*)?\s*$")  # "3", "3.0": as Excel/pandas write counts
_EXAMPLE_ROWS = 5
# a spreadsheet's summary line ("Total", "Grand total:") in an identifier column
_TOTAL_LABEL = re.compile(r"^\s*(?:grand\s+|sub\s*)?totals?\s*:?\s*$", re.IGNORECASE)
_FREE_TEXT = frozenset({"forename", "surname", "string", "id", "postcode"})
# a pa.scalar, not "": comparing with a Python str makes pyarrow import pandas (0.25 s)
_EMPTY = pa.scalar("", pa.string())


@dataclass
class EncodeResult:
    """The hashed rows of a batch, the rejected row numbers and per-field invalid counts."""

    table: pa.Table
    rejects: list[tuple[int, str]] = field(default_factory=list)
    invalid_counts: dict[str, int] = field(default_factory=dict)
    rows_in: int = 0
    #: per field: non-blank values, the first invalid rows (1-based data rows), and for
    #: dates the values read with day and month swapped (many of those = a wrong format)
    present_counts: dict[str, int] = field(default_factory=dict)
    invalid_rows: dict[str, list[int]] = field(default_factory=dict)
    swapped_counts: dict[str, int] = field(default_factory=dict)


@dataclass
class _Normalised:
    """Per distinct raw value of one identifier column."""

    valid: list[bool]
    variants: dict[str, list[str | None]]
    extra: list[Any]  # a date (for age bands) or a district (for areas), else None
    swapped: list[bool] | None = None  # dates read with day and month swapped
    sector: list[Any] | None = None  # UK postcodes: the sector (for sector-level areas)


def _normalise_distinct(
    ident: IdentifierSpec, values: Sequence[str | None], ref: date
) -> _Normalised:
    kind = ident.type
    active = ident.active_variants
    derived: list[Mapping[str, str | None]]
    extra: list[Any]
    if kind == "nhs_number":
        # the hot path on real extracts: nearly every NHS number is distinct
        exact = normalise_nhs_numbers(values)
        return _Normalised([e is not None for e in exact], {"exact": exact}, [None] * len(exact))
    if kind in ("forename", "surname"):
        extra = [normalise_name(raw) for raw in values]
        derived = [name_variants(name) for name in extra]
        if "swap" in active:  # the exact name, hashed in the domain both name fields share
            derived = [{**d, "swap": d["exact"]} for d in derived]
    elif kind == "date":
        read = [read_date_cached(raw, ref, ident.formats) for raw in values]
        extra = [parsed for parsed, _ in read]
        derived = [date_variants_cached(parsed) for parsed in extra]
        variants = {v: [d[v] for d in derived] for v in active}
        swapped = [status == "swapped" for _, status in read]
        return _Normalised([p is not None for p in extra], variants, extra, swapped)
    elif kind == "uk_postcode":
        full, sector, district = uk_postcode_variants_bulk(values)
        if set(active) <= {"full", "sector", "district"}:
            by_name = {"full": full, "sector": sector, "district": district}
            return _Normalised(
                [f is not None for f in full], {v: by_name[v] for v in active}, district,
                sector=sector,
            )  # fmt: skip
        derived = [uk_postcode_variants(p) for p in full]
        valid = [d["full"] is not None for d in derived]
        return _Normalised(valid, {v: [d[v] for d in derived] for v in active}, district,
                           sector=sector)  # fmt: skip
    elif kind == "postcode":
        codes = [normalise_generic_postcode(raw) for raw in values]
        derived = [{"full": c, "prefix3": c[:3] if c else None} for c in codes]
        extra = [d["prefix3"] for d in derived]
    else:
        normalise = normalise_sex if kind == "sex" else normalise_generic  # string, id
        derived = [{"exact": normalise(raw)} for raw in values]
        if kind == "id" and len(active) > 1:
            derived = [_id_variants(d["exact"]) for d in derived]
        extra = [None] * len(derived)
    # every variant of a missing or invalid value is None, so validity is the first variant's
    first = "full" if kind in ("date", "uk_postcode", "postcode") else "exact"
    valid = [d[first] is not None for d in derived]
    variants = {v: [d[v] for d in derived] for v in active}
    return _Normalised(valid, variants, extra)


def _id_variants(value: str | None) -> dict[str, str | None]:
    """An id's typo-tolerant variants: each third masked in turn (a single mistyped
    character leaves one of the three intact) and its characters sorted (a transposition
    leaves it intact). Ids shorter than 4 characters get none: too little is left."""
    if value is None or len(value) < 4:
        return {"exact": value, "mask1": None, "mask2": None, "mask3": None, "sorted": None}
    n = len(value)
    cuts = (0, round(n / 3), round(2 * n / 3), n)
    masks = {
        f"mask{i + 1}": value[: cuts[i]] + "*" * (cuts[i + 1] - cuts[i]) + value[cuts[i + 1] :]
        for i in range(3)
    }
    return {"exact": value, **masks, "sorted": "".join(sorted(value))}


def _as_strings(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = pc.cast(arr, pa.string())
    return arr


def _distinct(arr: pa.Array) -> tuple[list[str | None], pa.Array, np.ndarray[Any, Any]]:
    """Distinct values, per-row indices into them (null for null/blank), per-value counts."""
    # (a pa.scalar, not "": a Python str here makes pyarrow import pandas, 0.25 s)
    blank = pc.equal(pc.utf8_trim_whitespace(arr), pa.scalar("", arr.type))
    arr = pc.if_else(blank, pa.scalar(None, arr.type), arr)
    encoded = pc.dictionary_encode(arr)
    uniques: list[str | None] = encoded.dictionary.to_pylist()
    indices = encoded.indices
    idx = indices.fill_null(len(uniques)).to_numpy(zero_copy_only=False)
    counts = np.bincount(idx, minlength=len(uniques) + 1)[: len(uniques)]
    return uniques, indices, counts


class _CachedMaker:
    """A token maker with a bounded memo of value -> token across batches."""

    def __init__(self, maker: TokenMaker) -> None:
        self.maker = maker
        self.cache: dict[str, bytes] = {}
        self.memoise = True  # off once a batch shows the values hardly repeat

    def array(self, values: Sequence[str | None]) -> pa.FixedSizeBinaryArray:
        if not self.memoise:
            # NHS numbers, full postcodes: nearly every value is new, so the memo only
            # costs (a dictionary insert and lookup per value, and its memory)
            return self.maker.array(values)
        cache = self.cache
        if len(cache) > _CACHE_LIMIT:
            cache.clear()
        todo = [v for v in dict.fromkeys(values) if v is not None and v not in cache]
        if len(values) >= _MEMO_PROBE and len(todo) > 0.9 * len(values) and cache:
            # a second batch of thousands of values, nine in ten of them new: stop memoising
            self.memoise = False
            self.cache = {}
            return self.maker.array(values)
        if todo:
            tokens = self.maker.array(todo)
            width = self.maker.length
            raw = tokens.buffers()[1].to_pybytes()
            for i, value in enumerate(todo):
                cache[value] = raw[i * width : (i + 1) * width]
        zero = bytes(self.maker.length)
        parts = [zero if v is None else cache[v] for v in values]
        mask = None
        if None in values:
            mask = pa.array([v is not None for v in values], pa.bool_()).buffers()[1]
        return pa.FixedSizeBinaryArray.from_buffers(
            self.maker.type, len(values), [mask, pa.py_buffer(b"".join(parts))]
        )


class Encoder:
    """Encodes batches of one partner's extract under one spec and key."""

    def __init__(self, spec: Spec, key: bytes, column_map: Mapping[str, str] | None = None) -> None:
        self.spec = spec
        self.schema = output_schema(spec)
        #: what `pprl hash` writes to the file that is uploaded: no row numbers (they stay
        #: with the partner, in the optional row map beside it)
        self.upload_schema = pa.schema([f for f in self.schema if f.name != ROW_REF_COLUMN])
        self.column_map = dict(column_map or {})
        known = {i.name for i in spec.identifiers} | {
            a.name for a in spec.attributes if a.kind in ("category", "count")
        }
        for name in self.column_map:
            if name not in known:
                raise InputError(
                    f"--column {name}=...: the spec has no identifier or category/count "
                    f"attribute called {name!r}"
                )
        # one maker per HMAC domain: variants that share a domain (name parts, the swap
        # of every name field, a date's swap) share its maker and its memo
        by_domain: dict[tuple[str, str], _CachedMaker] = {}
        self._makers: dict[tuple[str, str], _CachedMaker] = {}
        for ident in spec.identifiers:
            for variant in ident.active_variants:
                domain = token_domain(ident, variant)
                if domain not in by_domain:
                    by_domain[domain] = _CachedMaker(TokenMaker(key, *domain, spec.token_bytes))
                self._makers[(ident.name, variant)] = by_domain[domain]
        bloom = spec.encoding.bloom
        self._blooms = (
            {f: BloomEncoder(key, f, bloom) for f in bloom.fields} if bloom is not None else {}
        )

    def input_column(self, name: str, default: str) -> str:
        """The input column for an identifier/attribute, honouring ``--column`` overrides."""
        return self.column_map.get(name, default)

    def required_columns(self) -> dict[str, str]:
        """Input column -> the spec field that reads it."""
        needed: dict[str, str] = {}
        for ident in self.spec.identifiers:
            needed[self.input_column(ident.name, ident.source_column)] = ident.name
        for attr in self.spec.attributes:
            if attr.kind in ("category", "count"):
                needed[self.input_column(attr.name, attr.source_column)] = attr.name
        return needed

    def check_columns(self, available: Sequence[str], origin: str) -> None:
        """Raise one clear :class:`InputError` if the input lacks a column the spec needs."""
        have = set(available)
        missing = [(col, name) for col, name in self.required_columns().items() if col not in have]
        if missing:
            listed = ", ".join(f"{col!r} (for {name})" for col, name in missing)
            found = ", ".join(repr(c) for c in list(available)[:30]) or "none"
            example = missing[0][1]
            raise InputError(
                f"{origin}: missing column{'s' if len(missing) > 1 else ''} {listed}; "
                f"columns found: {found}. Rename the column or map it with "
                f"--column {example}=YOUR_COLUMN"
            )

    def encode(self, table: pa.Table, *, row_offset: int = 0) -> EncodeResult:
        """Encode a batch. ``row_offset`` is the number of input rows before this batch."""
        n = table.num_rows
        ref = self.spec.reference_date
        columns: dict[str, pa.Array] = {}
        invalid: dict[str, int] = {}
        usable = np.zeros(n, dtype=bool)
        extras: dict[str, tuple[list[Any], pa.Array]] = {}
        present: dict[str, int] = {}
        invalid_rows: dict[str, list[int]] = {}
        swapped: dict[str, int] = {}
        any_identifier = np.zeros(n, dtype=bool)  # some identifier cell is not blank
        total_label = np.zeros(n, dtype=bool)  # some identifier cell says "Total"

        for ident in self.spec.identifiers:
            raw = _as_strings(table.column(self.input_column(ident.name, ident.source_column)))
            uniques, indices, counts = _distinct(raw)
            norm = _normalise_distinct(ident, uniques, ref)
            valid_u = np.asarray(norm.valid, dtype=bool)
            invalid[ident.name] = int(counts[~valid_u].sum()) if len(uniques) else 0
            row_idx = indices.fill_null(len(uniques)).to_numpy(zero_copy_only=False)
            present[ident.name] = int(counts.sum())
            bad = np.flatnonzero(~np.append(valid_u, True)[row_idx])[:_EXAMPLE_ROWS]
            invalid_rows[ident.name] = [int(r) + row_offset + 1 for r in bad]
            if norm.swapped is not None:
                swapped[ident.name] = int(counts[np.asarray(norm.swapped, dtype=bool)].sum())
            any_identifier |= row_idx < len(uniques)
            # "Total" is an invalid NHS number, date or postcode, but a valid name: look at
            # every name, and only at the invalid values of other types (few, so cheap)
            looked = range(len(uniques)) if ident.type in _FREE_TEXT else np.flatnonzero(~valid_u)
            said = [i for i in looked if (u := uniques[i]) is not None and _TOTAL_LABEL.match(u)]
            if said:
                says_total = np.zeros(len(uniques) + 1, dtype=bool)
                says_total[np.asarray(said, dtype=np.int64)] = True
                total_label |= says_total[row_idx]
            if ident.type != "sex":
                # sex alone cannot link anyone: it does not make a row usable
                usable |= np.append(valid_u, False)[row_idx]
            for variant, values in norm.variants.items():
                distinct_tokens = self._makers[(ident.name, variant)].array(values)
                columns[token_column(ident.name, variant)] = distinct_tokens.take(indices)
            if ident.name in self._blooms:
                bloom = self._blooms[ident.name].array(norm.extra)
                columns[bloom_column(ident.name)] = bloom.take(indices)
            extras[ident.name] = (norm.extra, indices)
            if norm.sector is not None:  # sector-level areas read this instead
                extras[f"{ident.name}\x00sector"] = (norm.sector, indices)

        figures = np.zeros(n, dtype=bool)  # some count/category cell is filled
        for attr in self.spec.attributes:
            columns[attribute_column(attr.name)] = self._attribute(attr, table, extras, invalid)
            if attr.kind in ("category", "count"):
                raw = _as_strings(table.column(self.input_column(attr.name, attr.source_column)))
                blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(raw), _EMPTY), True)
                figures |= pc.invert(blank).to_numpy(zero_copy_only=False)
        usable &= ~total_label

        keep = pa.array(usable)
        row_ref = pa.array(np.arange(row_offset + 1, row_offset + n + 1, dtype=np.int64))
        out = pa.table(
            [row_ref, *(columns[f.name] for f in self.schema if f.name != ROW_REF_COLUMN)],
            schema=self.schema,
        ).filter(keep)
        rejects = []
        for r in np.flatnonzero(~usable):
            if total_label[r] or (not any_identifier[r] and figures[r]):
                reason = REJECT_TOTAL
            elif not any_identifier[r]:
                reason = REJECT_BLANK
            else:
                reason = REJECT_NO_IDENTIFIER
            rejects.append((int(r) + row_offset + 1, reason))
        return EncodeResult(out, rejects, invalid, n, present, invalid_rows, swapped)

    def _attribute(
        self,
        attr: AttributeSpec,
        table: pa.Table,
        extras: Mapping[str, tuple[list[Any], pa.Array]],
        invalid: dict[str, int],
    ) -> pa.Array:
        if attr.kind in ("age_band", "area"):
            assert attr.source is not None
            per_unique, indices = extras[attr.source + ("\x00sector" if attr.sector else "")]
            labels: list[str | None]
            if attr.kind == "age_band":
                bands, names = attr.age_bands, _band_labels(attr)
                ref = self.spec.reference_date
                labels = [_age_band(d, ref, bands, names) for d in per_unique]
            else:
                labels = list(per_unique)
            return pa.array(labels, pa.string()).take(indices)
        raw = _as_strings(table.column(self.input_column(attr.name, attr.source_column)))
        uniques, indices, counts = _distinct(raw)
        convert: Callable[[str | None], Any]
        if attr.kind == "category":
            allowed = {_category_key(v): v for v in attr.values or ()}

            def convert(value: str | None) -> Any:
                return None if value is None else allowed.get(_category_key(value))

            kind: pa.DataType = pa.string()
        else:

            def convert(value: str | None) -> Any:
                match = _WHOLE_NUMBER.match(value) if value is not None else None
                if match is None:
                    return None
                number = int(match[1])
                return number if number <= attr.max_value else None

            kind = pa.int32()
        converted = [convert(u) for u in uniques]
        bad = np.asarray([c is None for c in converted], dtype=bool)
        invalid[attr.name] = int(counts[bad].sum()) if len(uniques) else 0
        return pa.array(converted, kind).take(indices)


def _category_key(value: str) -> str:
    return " ".join(value.strip().casefold().replace("_", " ").replace("-", " ").split())


def _age_band(
    born: date | None, ref: date, bands: Sequence[int], names: Sequence[str]
) -> str | None:
    if born is None:
        return None
    age = ref.year - born.year - ((ref.month, ref.day) < (born.month, born.day))
    position = bisect.bisect_right(bands, age) - 1
    return names[max(position, 0)]


@functools.cache
def _band_labels(attr: AttributeSpec) -> tuple[str, ...]:
    return attr.band_labels()


def encode_table(
    spec: Spec,
    key: bytes,
    table: pa.Table,
    *,
    row_offset: int = 0,
    column_map: Mapping[str, str] | None = None,
) -> EncodeResult:
    """Hash one in-memory extract (or batch) under ``spec`` and ``key``.

    Raises :class:`InputError` if a column the spec needs is missing.
    """
    encoder = Encoder(spec, key, column_map)
    encoder.check_columns(table.column_names, "input")
    return encoder.encode(table, row_offset=row_offset)
