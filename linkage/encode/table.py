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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from linkage.encode.bloom import BloomEncoder
from linkage.encode.tokens import TokenMaker
from linkage.errors import InputError
from linkage.normalise import (
    name_variants,
    normalise_generic,
    normalise_generic_postcode,
    normalise_name,
    normalise_nhs_number,
    normalise_sex,
    uk_postcode_variants,
)
from linkage.normalise.dates import date_variants_cached, parse_date_cached
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
REJECT_NO_IDENTIFIER = "no usable identifier: every identifier is empty or invalid"


@dataclass
class EncodeResult:
    """The hashed rows of a batch, the rejected row numbers and per-field invalid counts."""

    table: pa.Table
    rejects: list[tuple[int, str]] = field(default_factory=list)
    invalid_counts: dict[str, int] = field(default_factory=dict)
    rows_in: int = 0


@dataclass
class _Normalised:
    """Per distinct raw value of one identifier column."""

    valid: list[bool]
    variants: dict[str, list[str | None]]
    extra: list[Any]  # a date (for age bands) or a district (for areas), else None


def _normalise_distinct(
    ident: IdentifierSpec, values: Sequence[str | None], ref: date
) -> _Normalised:
    kind = ident.type
    active = ident.active_variants
    derived: list[Mapping[str, str | None]]
    extra: list[Any]
    if kind == "nhs_number":
        # the hot path on real extracts: nearly every NHS number is distinct
        exact = [normalise_nhs_number(raw) for raw in values]
        return _Normalised([e is not None for e in exact], {"exact": exact}, [None] * len(exact))
    if kind in ("forename", "surname"):
        extra = [normalise_name(raw) for raw in values]
        derived = [name_variants(name) for name in extra]
    elif kind == "date":
        extra = [parse_date_cached(raw, ref) for raw in values]
        derived = [date_variants_cached(parsed) for parsed in extra]
    elif kind == "uk_postcode":
        full, sector, district = uk_postcode_variants_bulk(values)
        if set(active) <= {"full", "sector", "district"}:
            by_name = {"full": full, "sector": sector, "district": district}
            return _Normalised(
                [f is not None for f in full], {v: by_name[v] for v in active}, district
            )
        derived = [uk_postcode_variants(p) for p in full]
        extra = district
    elif kind == "postcode":
        codes = [normalise_generic_postcode(raw) for raw in values]
        derived = [{"full": c, "prefix3": c[:3] if c else None} for c in codes]
        extra = [d["prefix3"] for d in derived]
    else:
        normalise = normalise_sex if kind == "sex" else normalise_generic  # string, id
        derived = [{"exact": normalise(raw)} for raw in values]
        extra = [None] * len(derived)
    # every variant of a missing or invalid value is None, so validity is the first variant's
    first = "full" if kind in ("date", "uk_postcode", "postcode") else "exact"
    valid = [d[first] is not None for d in derived]
    variants = {v: [d[v] for d in derived] for v in active}
    return _Normalised(valid, variants, extra)


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

    def array(self, values: Sequence[str | None]) -> pa.FixedSizeBinaryArray:
        cache = self.cache
        if len(cache) > _CACHE_LIMIT:
            cache.clear()
        todo = [v for v in dict.fromkeys(values) if v is not None and v not in cache]
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
        self._makers = {
            (i.name, v): _CachedMaker(TokenMaker(key, i.name, v, spec.token_bytes))
            for i in spec.identifiers
            for v in i.active_variants
        }
        for ident in spec.identifiers:
            if ident.type in ("forename", "surname"):
                # name parts share the exact name's domain, so "SMITH" (part of
                # "SMITH-JONES") agrees with a plain "SMITH" in the enclave
                exact = self._makers.get((ident.name, "exact")) or _CachedMaker(
                    TokenMaker(key, ident.name, "exact", spec.token_bytes)
                )
                for part in ("part1", "part2"):
                    if (ident.name, part) in self._makers:
                        self._makers[(ident.name, part)] = exact
            if ident.type == "date" and (ident.name, "swapped") in self._makers:
                # The swapped date is hashed in the *full* date's domain, so that one
                # record's full date can equal another's swapped one in the enclave.
                full = self._makers.get((ident.name, "full")) or _CachedMaker(
                    TokenMaker(key, ident.name, "full", spec.token_bytes)
                )
                self._makers[(ident.name, "swapped")] = full
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

        for ident in self.spec.identifiers:
            raw = _as_strings(table.column(self.input_column(ident.name, ident.source_column)))
            uniques, indices, counts = _distinct(raw)
            norm = _normalise_distinct(ident, uniques, ref)
            valid_u = np.asarray(norm.valid, dtype=bool)
            invalid[ident.name] = int(counts[~valid_u].sum()) if len(uniques) else 0
            if ident.type != "sex":
                # sex alone cannot link anyone: it does not make a row usable
                row_idx = indices.fill_null(len(uniques)).to_numpy(zero_copy_only=False)
                usable |= np.append(valid_u, False)[row_idx]
            for variant, values in norm.variants.items():
                distinct_tokens = self._makers[(ident.name, variant)].array(values)
                columns[token_column(ident.name, variant)] = distinct_tokens.take(indices)
            if ident.name in self._blooms:
                bloom = self._blooms[ident.name].array(norm.extra)
                columns[bloom_column(ident.name)] = bloom.take(indices)
            extras[ident.name] = (norm.extra, indices)

        for attr in self.spec.attributes:
            columns[attribute_column(attr.name)] = self._attribute(attr, table, extras, invalid)

        keep = pa.array(usable)
        row_ref = pa.array(np.arange(row_offset + 1, row_offset + n + 1, dtype=np.int64))
        out = pa.table(
            [row_ref, *(columns[f.name] for f in self.schema if f.name != ROW_REF_COLUMN)],
            schema=self.schema,
        ).filter(keep)
        rejected = np.flatnonzero(~usable) + row_offset + 1
        rejects = [(int(r), REJECT_NO_IDENTIFIER) for r in rejected]
        return EncodeResult(out, rejects, invalid, n)

    def _attribute(
        self,
        attr: AttributeSpec,
        table: pa.Table,
        extras: Mapping[str, tuple[list[Any], pa.Array]],
        invalid: dict[str, int],
    ) -> pa.Array:
        if attr.kind in ("age_band", "area"):
            assert attr.source is not None
            per_unique, indices = extras[attr.source]
            labels: list[str | None]
            if attr.kind == "age_band":
                labels = [_age_band(d, self.spec.reference_date, attr) for d in per_unique]
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
                if value is None:
                    return None
                try:
                    number = int(value.strip())
                except ValueError:
                    return None
                return number if 0 <= number <= attr.max_value else None

            kind = pa.int32()
        converted = [convert(u) for u in uniques]
        bad = np.asarray([c is None for c in converted], dtype=bool)
        invalid[attr.name] = int(counts[bad].sum()) if len(uniques) else 0
        return pa.array(converted, kind).take(indices)


def _category_key(value: str) -> str:
    return " ".join(value.strip().casefold().replace("_", " ").replace("-", " ").split())


def _age_band(born: date | None, ref: date, attr: AttributeSpec) -> str | None:
    if born is None:
        return None
    age = ref.year - born.year - ((ref.month, ref.day) < (born.month, born.day))
    position = bisect.bisect_right(attr.age_bands, age) - 1
    return _band_labels(attr)[max(position, 0)]


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
