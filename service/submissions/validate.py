"""Checks on a hashed extract, run by the enclave on the opened payload; one message each.

The enclave worker runs them in a child process under memory and time limits (see
``service.worker.intake``), so a hostile file costs a rejection, not the worker. In order:
a readable Parquet file of sane size; a pprl manifest whose spec fingerprint
and key check value match the project (a wrong secret is caught here, not discovered
later as zero overlap); no plaintext identifier columns; exactly the spec's columns and
types; token columns that hold keyed tokens, not readable text (the plaintext guard);
attributes within their allowed values (string attributes are read as dictionaries, so
a dictionary page that would expand one long value to every row is judged by its
dictionary, never expanded); no full-identity token repeated implausibly often (100,000
copies of one person would outweigh everyone else). ``row_ref`` must not be uploaded:
the partner keeps its row numbers. Messages never quote a value from the file.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from linkage.errors import ManifestError
from linkage.manifest import MANIFEST_KEY, Manifest
from linkage.spec import (
    ROW_REF_COLUMN,
    Spec,
    attribute_column,
    fingerprint,
    output_schema,
    token_columns,
)

__all__ = [
    "ExtractCheck",
    "ExtractChecker",
    "ExtractRejected",
    "RepeatLimits",
    "check_extract",
]

_GUARD_SAMPLE = 20_000  # values per token column inspected by the plaintext guard
_GUARD_SHARE = 0.01  # a random 16-byte token is printable ASCII with p ~ 1e-7
_MAX_ROWS = 200_000_000
_MAX_EXPANSION = 64  # declared uncompressed size / file size (zip-bomb-like row groups)
_MAX_ROWS_PER_BYTE = 4  # rows per byte of file (run-length-encoded bombs)
_DISTRICT = re.compile(r"^[A-Z]{1,2}[0-9][0-9A-Z]?$")
_SECTOR = re.compile(r"^[A-Z]{1,2}[0-9][0-9A-Z]? [0-9]$")
_MAX_ATTRIBUTE_CHARS = 200  # longest clear attribute value worth looking at
#: identifier types whose exact token alone names one person
_FULL_IDENTITY_TYPES = ("nhs_number", "id")
#: (type, variant) triple that names one person together: names and full date of birth
_NAME_DOB = (("forename", "exact"), ("surname", "exact"), ("date", "full"))


class ExtractRejected(Exception):
    """The upload is not an acceptable hashed extract for this project."""

    def __init__(self, detail: str, reason: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.reason = reason  # short machine-readable reason for the audit log


@dataclass(frozen=True)
class RepeatLimits:
    """How often one full-identity token may repeat: at most ``share`` of the rows, and
    always at least ``floor`` times (small extracts have honest duplicates)."""

    share: float = 0.01
    floor: int = 50


@dataclass(frozen=True)
class ExtractCheck:
    """What validation learned about an accepted extract."""

    manifest: Manifest
    rows: int


def _plaintext_hint(column: str) -> str:
    return (
        f"column {column!r} holds readable text (names, dates, postcodes or NHS numbers), "
        "not keyed tokens: this looks like a plaintext extract. Run `pprl hash` on it first "
        "and upload the hashed file"
    )


def _identifier_columns(spec: Spec) -> set[str]:
    names = {i.source_column for i in spec.identifiers} | {i.name for i in spec.identifiers}
    return names | {"nhs_number", "forename", "surname", "date_of_birth", "dob", "postcode", "name"}


def check_extract(
    source: Path | pa.Buffer,
    spec: Spec,
    key_check_value: str | None,
    repeats: RepeatLimits | None = None,
) -> ExtractCheck:
    """Validate ``source`` (a file, or the opened payload in memory) against ``spec`` and
    the project's key check value (if fixed)."""
    buffer = source if isinstance(source, pa.Buffer) else pa.py_buffer(source.read_bytes())
    checker = ExtractChecker(buffer, spec, key_check_value, repeats)
    checker.advance(buffer.size)
    return checker.finish()


class ExtractChecker:
    """The checks of :func:`check_extract`, split so that they can run while the file
    is still arriving (``service.worker.streaming``).

    Constructing one checks the file's ends and footer (size, manifest, columns and
    types); the buffer must be the file's full length, with at least its first 4 bytes
    and its footer in place (a streamed upload's footer comes first, copied ahead of the
    file). :meth:`advance` then checks each row group whose bytes all lie below
    ``available``, in file order: the plaintext guard on the first rows, each group's
    attributes, and each group's identity tokens folded for the repeat count, which
    :meth:`finish` makes once every group is in. It reads nothing else, so bytes not
    yet arrived are never read. Over a whole file the checks, their order and their
    messages are those of :func:`check_extract`.
    """

    def __init__(
        self,
        buffer: pa.Buffer,
        spec: Spec,
        key_check_value: str | None,
        repeats: RepeatLimits | None = None,
    ) -> None:
        self.spec = spec
        size = buffer.size
        if size == 0:
            raise ExtractRejected("the upload is empty", "empty")
        head, tail = buffer[:4].to_pybytes(), buffer[max(size - 4, 0) :].to_pybytes()
        if head != b"PAR1" or tail != b"PAR1":
            raise ExtractRejected(
                "not a Parquet file (or a truncated one): upload the file `pprl hash` wrote",
                "not_parquet",
            )
        try:
            pf = pq.ParquetFile(pa.BufferReader(buffer))
            meta = pf.metadata
            schema = pf.schema_arrow
        except (pa.ArrowInvalid, OSError, ValueError):
            raise ExtractRejected(
                "the Parquet file is corrupt (unreadable footer)", "corrupt"
            ) from None
        self.manifest = _check_footer(meta, schema, size, spec, key_check_value)
        self.rows = meta.num_rows
        self._expected = pa.schema([f for f in output_schema(spec) if f.name != ROW_REF_COLUMN])
        # the columns are known good now: read string attributes as dictionaries
        strings = [attribute_column(a.name) for a in spec.attributes if a.kind != "count"]
        self._pf = pq.ParquetFile(pa.BufferReader(buffer), read_dictionary=strings)
        self._ends = _row_group_ends(meta, size)
        self._group_rows = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        self._attributes = _attribute_checks(spec)
        limits = repeats or RepeatLimits()
        self._allowed = max(limits.floor, int(limits.share * self.rows))
        # small extracts have honest duplicates: the count is only made above the floor
        self._keys = _identity_keys(spec) if self.rows > self._allowed else []
        self._folds: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in self._keys]
        self._guarded = False
        self._checked = 0  # row groups checked so far

    @property
    def done(self) -> bool:
        """Every row group has been checked."""
        return self._checked == len(self._ends)

    def advance(self, available: int) -> None:
        """Check, in order, every row group whose bytes all lie below ``available``."""
        ready = self._checked
        while ready < len(self._ends) and self._ends[ready] <= available:
            ready += 1
        if not self._guarded:
            # the guard reads the first rows, as many as it samples (or all there are)
            if ready < len(self._ends) and sum(self._group_rows[:ready]) < _GUARD_SAMPLE:
                return
            _plaintext_guard(self._pf, self._expected, ready)
            self._guarded = True
        for group in range(self._checked, ready):
            self._check_group(group)
        self._checked = ready

    def finish(self) -> ExtractCheck:
        """Count repeated identities over all row groups; the verdict on the file."""
        if not self.done:
            raise ValueError("finish() before every row group was checked")
        for key, folds in zip(self._keys, self._folds, strict=True):
            most = self._most_repeated(key, folds)
            if most > self._allowed:
                what = " + ".join(key)
                raise ExtractRejected(
                    f"one value of {what} appears in {most:,} of {self.rows:,} rows (at most "
                    f"{self._allowed:,} allowed): an extract lists each person about once",
                    "repeated_identity",
                )
        return ExtractCheck(manifest=self.manifest, rows=self.rows)

    def _check_group(self, group: int) -> None:
        # one read of every column the checks need: Arrow decodes them side by side on
        # its threads (two reads, attributes then tokens, took ~2x as long)
        columns = list(dict.fromkeys([*self._attributes, *(c for k in self._keys for c in k)]))
        if not columns:
            return
        try:
            table = self._pf.read_row_group(group, columns=columns)
            if self._attributes:
                _check_attributes(table, self._attributes)
            for key, folds in zip(self._keys, self._folds, strict=True):
                folds.append(_fold(table, key))
        except (pa.ArrowInvalid, OSError):
            raise ExtractRejected(
                "the Parquet file is corrupt (unreadable data pages)", "corrupt"
            ) from None

    def _most_repeated(self, key: list[str], folds: list[tuple[np.ndarray, np.ndarray]]) -> int:
        return _most_repeated(folds, key, self._allowed, lambda: self._read(key))

    def _read(self, key: list[str]) -> pa.Table:
        try:
            return self._pf.read(columns=key)
        except (pa.ArrowInvalid, OSError):
            raise ExtractRejected(
                "the Parquet file is corrupt (unreadable data pages)", "corrupt"
            ) from None


def _check_footer(
    meta: pq.FileMetaData, schema: pa.Schema, size: int, spec: Spec, key_check_value: str | None
) -> Manifest:
    """The checks that need only the footer: size, manifest, columns and their types."""
    if meta.num_rows > _MAX_ROWS:
        raise ExtractRejected(
            f"too many rows ({meta.num_rows:,}; at most {_MAX_ROWS:,})", "too_big"
        )
    declared = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    # a hashed extract carries at least one incompressible 16-byte token per row in
    # practice; far more rows than bytes means values that explode when decoded
    if (
        declared > size * _MAX_EXPANSION + (64 << 20)
        or meta.num_rows > size * _MAX_ROWS_PER_BYTE + 1000
    ):
        raise ExtractRejected(
            "the file declares far more data than it holds (a decompression bomb?)", "bomb"
        )

    plaintext = sorted(set(schema.names) & _identifier_columns(spec))
    if plaintext:
        raise ExtractRejected(
            f"column {plaintext[0]!r} is a plaintext identifier: run `pprl hash` on the extract "
            "first and upload the hashed file",
            "plaintext",
        )

    try:
        manifest = Manifest.from_json((meta.metadata or {}).get(MANIFEST_KEY))
    except ManifestError as exc:
        raise ExtractRejected(str(exc), "manifest") from None
    if manifest.spec_fingerprint != fingerprint(spec):
        raise ExtractRejected(
            "the extract was hashed under a different spec (fingerprint "
            f"{manifest.spec_fingerprint[:19]}..., this project's is {fingerprint(spec)[:19]}...): "
            "hash it again with the project's spec",
            "spec_mismatch",
        )
    if key_check_value is not None and manifest.key_check_value != key_check_value:
        raise ExtractRejected(
            f"the extract was hashed under a different secret (key check value "
            f"{manifest.key_check_value[:16]}, the project's is {key_check_value}): every "
            "partner must hash with the same project secret",
            "wrong_secret",
        )
    if manifest.rows_written != meta.num_rows:
        raise ExtractRejected(
            f"the manifest says {manifest.rows_written:,} rows but the file holds "
            f"{meta.num_rows:,}: it was altered after `pprl hash`",
            "manifest_rows",
        )

    if ROW_REF_COLUMN in schema.names:
        raise ExtractRejected(
            "the extract carries row_ref: partners keep their row numbers, upload with "
            "`pprl submit` (it leaves row_ref out)",
            "row_ref",
        )
    full = output_schema(spec)
    expected = pa.schema([f for f in full if f.name != ROW_REF_COLUMN])
    missing = [f.name for f in expected if f.name not in schema.names]
    extra = [n for n in schema.names if expected.get_field_index(n) < 0]
    if extra:
        raise ExtractRejected(
            f"unexpected column {extra[0]!r}: the spec allows only its tokens and attributes",
            "extra_column",
        )
    if missing:
        raise ExtractRejected(
            f"missing column {missing[0]!r} (and {len(missing) - 1} more)" if len(missing) > 1
            else f"missing column {missing[0]!r}",
            "missing_column",
        )  # fmt: skip
    for field in expected:
        got = schema.field(field.name).type
        if pa.types.is_dictionary(got) and field.name.startswith("a_"):
            got = got.value_type  # read as a dictionary on purpose (see the module doc)
        if got != field.type:
            if field.name.startswith(("t_", "b_")) and (
                pa.types.is_string(got) or pa.types.is_large_string(got)
            ):
                raise ExtractRejected(_plaintext_hint(field.name), "plaintext")
            raise ExtractRejected(
                f"column {field.name!r} has type {got}, expected {field.type}", "wrong_type"
            )
    return manifest


#: bytes past a column chunk's declared end that a reader may still touch (Arrow pads
#: the ranges of files from old writers by up to 100 bytes; coalesced reads stay within)
_READ_MARGIN = 64 << 10


def _row_group_ends(meta: pq.FileMetaData, size: int) -> list[int]:
    """For each row group, the byte offset below which all of it lies (non-decreasing, so
    groups are checked in order). A group whose declared ranges fall outside the file's
    data area waits for the whole file: nothing is read from bytes not yet arrived."""
    data_end = size - 8 - meta.serialized_size
    ends, highest = [], 0
    for i in range(meta.num_row_groups):
        group = meta.row_group(i)
        end = 0
        for c in range(group.num_columns):
            column = group.column(c)
            start = column.data_page_offset
            if column.has_dictionary_page and column.dictionary_page_offset:
                start = min(start, column.dictionary_page_offset)
            stop = start + column.total_compressed_size
            if start < 4 or stop > data_end:
                end = size
                break
            end = max(end, stop)
        highest = max(highest, min(end + _READ_MARGIN, size))
        ends.append(highest)
    return ends


def _identity_keys(spec: Spec) -> list[list[str]]:
    """Column sets whose values each name one person (each checked for repeats)."""
    columns = token_columns(spec)
    keys = [[c.column] for c in columns if c.type in _FULL_IDENTITY_TYPES and c.variant == "exact"]
    triple = []
    for kind, variant in _NAME_DOB:
        match = next((c.column for c in columns if c.type == kind and c.variant == variant), None)
        if match is not None:
            triple.append(match)
    if len(triple) == len(_NAME_DOB):
        keys.append(triple)
    return keys


_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd: multiplying by it is a bijection on uint64
_SPREAD = np.uint64(0xD6E8FEB86659FD93)  # another odd constant, for the bucket hash


def _most_repeated(
    folds: list[tuple[np.ndarray, np.ndarray]],
    key: list[str],
    allowed: int,
    read: Callable[[], pa.Table],
) -> int:
    """How many rows share the most frequent value of ``key`` (rows missing part of the key
    name no one), counted without a per-row Python loop or a multi-column hash join.

    ``folds`` are :func:`_fold` of each row group in file order: each row's key folded to
    64 bits from the first 8 bytes of each token (tokens are HMAC outputs; a file whose
    tokens are not only makes its own rows collide, which can only raise the count). The
    64-bit values are first counted into about one bucket per row (:func:`_top_fold`); only
    values in a bucket holding more than ``allowed`` rows are sorted and their runs
    measured. Only if that count exceeds ``allowed`` are the key's columns read again
    (``read``) and the rows of the most frequent folded value counted exactly, so a
    collision can never reject an honest file. When nothing exceeds ``allowed`` the answer
    is an upper bound on the true count that is itself at most ``allowed``: all a caller
    acts on.
    """
    folded = np.concatenate([f for f, _ in folds]) if folds else np.zeros(0, np.uint64)
    valid = np.concatenate([v for _, v in folds]) if folds else np.zeros(0, bool)
    count, value = _top_fold(folded, valid, allowed)
    if count <= allowed:
        return count
    return _exact_count(read(), key, valid & (folded == value))


def _fold(table: pa.Table, key: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``key`` folded to 64 bits, and whether the row holds every part of it."""
    folded = np.zeros(table.num_rows, dtype=np.uint64)
    valid = np.ones(table.num_rows, dtype=bool)
    for name in key:
        heads, present = _token_heads(table.column(name))
        folded = folded * _MIX ^ heads
        valid &= present
    return folded, valid


def _top_fold(folded: np.ndarray, valid: np.ndarray, allowed: int) -> tuple[int, int]:
    """(rows sharing the most frequent folded value, that value), exact when it exceeds
    ``allowed``; otherwise some count no larger than ``allowed``.

    A bucket count comes first: every valid row's folded value is mapped by a
    multiplicative hash (its high bits, so structure in the low bits of hostile tokens
    does not crowd one bucket) to one of about as many buckets as rows, in one linear
    pass. A value repeated more than ``allowed`` times fills its bucket past ``allowed``,
    so only the rows of such buckets (none, for an honest extract with a limit in the
    hundreds or more) are sorted. Sorting all of them was 0.12-0.18 s of the 0.2-0.3 s the
    enclave spent on a 1M-row upload after its last byte arrived; counting is ~10 ms."""
    present = int(valid.sum())
    if present <= allowed:
        return 0, 0
    values = folded if present == len(folded) else folded[valid]
    bits = min(max(int(len(values) - 1).bit_length(), 8), 22)  # <= 32 MB of counts
    # one temporary, shifted in place and read as the signed bucket index it now fits
    # (each 8 MB temporary of a 1M-row file is faulted in afresh: four of them cost more
    # than the count itself)
    buckets = np.multiply(values, _SPREAD)
    np.right_shift(buckets, np.uint64(64 - bits), out=buckets)
    buckets = buckets.view(np.int64)
    counts = np.bincount(buckets, minlength=1 << bits)
    fullest = int(counts.max())
    if fullest <= allowed:
        return fullest, 0
    kept = np.sort(values[counts[buckets] > allowed])
    starts = np.flatnonzero(np.concatenate(([True], kept[1:] != kept[:-1], [True])))
    runs = np.diff(starts)
    top = int(runs.argmax())
    return int(runs[top]), int(kept[starts[top]])


def _exact_count(table: pa.Table, key: list[str], rows: np.ndarray) -> int:
    """The largest number of ``rows`` (a mask) holding exactly the same ``key`` values."""
    suspect = pa.Array.from_buffers(
        pa.bool_(), len(rows), [None, pa.py_buffer(np.packbits(rows, bitorder="little"))]
    )
    exact = table.select(key).filter(suspect).group_by(key).aggregate([([], "count_all")])
    return int(pc.max(exact.column("count_all")).as_py() or 0)


def _token_heads(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """The first 8 bytes of each fixed-width token as uint64, and which rows hold one,
    read chunk by chunk from Arrow's buffers (no combined copy of the column)."""
    heads, present = [], []
    for chunk in column.chunks:
        width = chunk.type.byte_width
        start = chunk.offset * width
        cells = np.frombuffer(chunk.buffers()[1], dtype=np.uint8)
        cells = cells[start : start + len(chunk) * width]
        if width % 8 == 0:  # a strided view of each token's first word: no copy (10x faster)
            heads.append(cells.view(np.uint64).reshape(len(chunk), width // 8)[:, 0])
        else:
            heads.append(
                np.ascontiguousarray(cells.reshape(len(chunk), width)[:, :8])
                .view(np.uint64)
                .ravel()
            )
        if chunk.null_count:
            bits = np.frombuffer(chunk.buffers()[0], dtype=np.uint8)
            present.append(
                np.unpackbits(bits, bitorder="little")[
                    chunk.offset : chunk.offset + len(chunk)
                ].astype(bool)
            )
        else:
            present.append(np.ones(len(chunk), dtype=bool))
    if not heads:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=bool)
    return np.concatenate(heads), np.concatenate(present)


def _plaintext_guard(pf: pq.ParquetFile, expected: pa.Schema, groups: int) -> None:
    """The first rows (up to the sample size, from the first ``groups`` row groups) of
    each token column must not be readable text."""
    token_cols = [f.name for f in expected if f.name.startswith("t_")]
    if not token_cols or pf.metadata.num_rows == 0 or groups == 0:
        return
    try:
        batch = next(
            pf.iter_batches(
                batch_size=_GUARD_SAMPLE, columns=token_cols, row_groups=list(range(groups))
            )
        )
    except StopIteration:
        return
    except (pa.ArrowInvalid, OSError):
        raise ExtractRejected(
            "the Parquet file is corrupt (unreadable data pages)", "corrupt"
        ) from None
    for name in token_cols:
        if _readable_share(batch.column(name)) > _GUARD_SHARE:
            raise ExtractRejected(_plaintext_hint(name), "plaintext")


def _readable_share(column: pa.Array) -> float:
    """Share of non-null values whose bytes are all printable ASCII (vectorised).

    Byte by byte, over the values still printable so far: a random token survives a byte
    with p = 95/256, so after a few bytes almost none are left to look at (4x less work
    than testing every byte of every value; text tokens are tested whole, as before)."""
    valid = column.drop_null()
    if len(valid) == 0:
        return 0.0
    width = valid.type.byte_width
    data = np.frombuffer(valid.buffers()[1], dtype=np.uint8)
    start = valid.offset * width
    cells = data[start : start + len(valid) * width].reshape(len(valid), width)
    alive = np.arange(len(valid))
    for byte in range(width):
        # uint8 arithmetic wraps: bytes below 0x20 land above 0x5E, so one compare does
        alive = alive[(cells[alive, byte] - np.uint8(0x20)) < np.uint8(0x5F)]
        if not len(alive):
            break
    return len(alive) / len(valid)


def _attribute_checks(spec: Spec) -> dict[str, tuple[str, set[str] | None]]:
    """What each attribute column may hold: ``(kind, allowed values)`` by column name."""
    checks: dict[str, tuple[str, set[str] | None]] = {}
    for attr in spec.attributes:
        column = attribute_column(attr.name)
        if attr.kind == "age_band":
            checks[column] = ("in", set(attr.band_labels()))
        elif attr.kind == "category":
            checks[column] = ("in", set(attr.values or ()))
        elif attr.kind == "area":
            source = spec.identifier(attr.source or "")
            uk = source.type == "uk_postcode"
            checks[column] = (("sector" if attr.sector else "district") if uk else "short", None)
        else:
            checks[column] = ("count", None)
    return checks


def _check_attributes(table: pa.Table, checks: dict[str, tuple[str, set[str] | None]]) -> None:
    """One row group's attribute columns hold only what the spec allows."""
    for column, (kind, allowed) in checks.items():
        for arr in table.column(column).chunks:
            if kind == "count":
                # the minimum, not a comparison with pa.scalar(0): making a scalar
                # imports pandas (0.5 s in every validator child)
                lowest = pc.min(arr).as_py()
                if lowest is not None and lowest < 0:
                    raise ExtractRejected(f"column {column!r} has negative counts", "attribute")
                continue
            # judge the dictionary, never the expanded column: one long value
            # referenced by every row must not be materialised once per row
            values = arr.dictionary if pa.types.is_dictionary(arr.type) else pc.unique(arr)
            longest = pc.max(pc.binary_length(values)).as_py() if len(values) else 0
            if longest and longest > _MAX_ATTRIBUTE_CHARS:
                raise ExtractRejected(
                    f"column {column!r} holds a value of {longest:,} bytes (attributes are "
                    "short codes: bands, districts, categories)",
                    "attribute",
                )
            distinct = [v for v in values.to_pylist() if v is not None]
            if kind == "in":
                assert allowed is not None
                bad_values = [v for v in distinct if v not in allowed]
            elif kind == "district":
                bad_values = [v for v in distinct if not _DISTRICT.fullmatch(v)]
            elif kind == "sector":
                bad_values = [v for v in distinct if not _SECTOR.fullmatch(v)]
            else:
                bad_values = [v for v in distinct if len(v) > 4]
            if bad_values:
                raise ExtractRejected(
                    f"column {column!r} holds {len(bad_values)} value(s) outside what the "
                    "spec allows (attributes must be coarse: bands, districts, categories)",
                    "attribute",
                )
