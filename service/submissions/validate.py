"""Checks on an uploaded hashed extract before it is sealed, each failure one message.

In order: a readable Parquet file of sane size; a pprl manifest whose spec fingerprint
and key check value match the project (a wrong secret is caught here, not discovered
later as zero overlap); no plaintext identifier columns; exactly the spec's columns and
types; token columns that hold keyed tokens, not readable text (the plaintext guard);
attributes within their allowed values. Messages never quote a value from the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from linkage.errors import ManifestError
from linkage.manifest import MANIFEST_KEY, Manifest
from linkage.spec import Spec, attribute_column, fingerprint, output_schema

__all__ = ["ExtractCheck", "ExtractRejected", "check_extract"]

_GUARD_SAMPLE = 20_000  # values per token column inspected by the plaintext guard
_GUARD_SHARE = 0.01  # a random 16-byte token is printable ASCII with p ~ 1e-7
_MAX_ROWS = 200_000_000
_MAX_EXPANSION = 64  # declared uncompressed size / file size (zip-bomb-like row groups)
_MAX_ROWS_PER_BYTE = 4  # rows per byte of file (run-length-encoded bombs)
_DISTRICT = re.compile(r"^[A-Z]{1,2}[0-9][0-9A-Z]?$")


class ExtractRejected(Exception):
    """The upload is not an acceptable hashed extract for this project."""

    def __init__(self, detail: str, reason: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.reason = reason  # short machine-readable reason for the audit log


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


def check_extract(path: Path, spec: Spec, key_check_value: str | None) -> ExtractCheck:
    """Validate ``path`` against ``spec`` and the project's key check value (if fixed)."""
    size = path.stat().st_size
    if size == 0:
        raise ExtractRejected("the upload is empty", "empty")
    with path.open("rb") as fh:
        head = fh.read(4)
        fh.seek(max(size - 4, 0))
        tail = fh.read(4)
    if head != b"PAR1" or tail != b"PAR1":
        raise ExtractRejected(
            "not a Parquet file (or a truncated one): upload the file `pprl hash` wrote",
            "not_parquet",
        )
    try:
        pf = pq.ParquetFile(path)
        meta = pf.metadata
        schema = pf.schema_arrow
    except (pa.ArrowInvalid, OSError, ValueError):
        raise ExtractRejected(
            "the Parquet file is corrupt (unreadable footer)", "corrupt"
        ) from None

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

    expected = output_schema(spec)
    missing = [f.name for f in expected if f.name not in schema.names]
    extra = [n for n in schema.names if expected.get_field_index(n) < 0]
    if extra:
        raise ExtractRejected(
            f"unexpected column {extra[0]!r}: the spec allows only its tokens, attributes "
            "and row_ref",
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
        if got != field.type:
            if field.name.startswith(("t_", "b_")) and (
                pa.types.is_string(got) or pa.types.is_large_string(got)
            ):
                raise ExtractRejected(_plaintext_hint(field.name), "plaintext")
            raise ExtractRejected(
                f"column {field.name!r} has type {got}, expected {field.type}", "wrong_type"
            )

    _plaintext_guard(pf, expected)
    _check_attributes(pf, spec)
    return ExtractCheck(manifest=manifest, rows=meta.num_rows)


def _plaintext_guard(pf: pq.ParquetFile, expected: pa.Schema) -> None:
    token_cols = [f.name for f in expected if f.name.startswith("t_")]
    if not token_cols or pf.metadata.num_rows == 0:
        return
    try:
        batch = next(pf.iter_batches(batch_size=_GUARD_SAMPLE, columns=token_cols))
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
    """Share of non-null values whose bytes are all printable ASCII (vectorised)."""
    valid = column.drop_null()
    if len(valid) == 0:
        return 0.0
    width = valid.type.byte_width
    data = np.frombuffer(valid.buffers()[1], dtype=np.uint8)
    start = valid.offset * width
    cells = data[start : start + len(valid) * width].reshape(len(valid), width)
    printable = ((cells >= 0x20) & (cells <= 0x7E)).all(axis=1)
    return float(np.mean(printable))


def _check_attributes(pf: pq.ParquetFile, spec: Spec) -> None:
    checks: dict[str, tuple[str, set[str] | None]] = {}
    for attr in spec.attributes:
        column = attribute_column(attr.name)
        if attr.kind == "age_band":
            checks[column] = ("in", set(attr.band_labels()))
        elif attr.kind == "category":
            checks[column] = ("in", set(attr.values or ()))
        elif attr.kind == "area":
            source = spec.identifier(attr.source or "")
            checks[column] = ("district" if source.type == "uk_postcode" else "short", None)
        else:
            checks[column] = ("count", None)
    if not checks:
        return
    try:
        for batch in pf.iter_batches(batch_size=65_536, columns=list(checks)):
            for column, (kind, allowed) in checks.items():
                arr = batch.column(column)
                if kind == "count":
                    bad = pc.sum(pc.less(arr, pa.scalar(0, arr.type))).as_py()
                    if bad:
                        raise ExtractRejected(f"column {column!r} has negative counts", "attribute")
                    continue
                distinct = [v for v in pc.unique(arr).to_pylist() if v is not None]
                if kind == "in":
                    assert allowed is not None
                    bad_values = [v for v in distinct if v not in allowed]
                elif kind == "district":
                    bad_values = [v for v in distinct if not _DISTRICT.match(v)]
                else:
                    bad_values = [v for v in distinct if len(v) > 4]
                if bad_values:
                    raise ExtractRejected(
                        f"column {column!r} holds {len(bad_values)} value(s) outside what the "
                        "spec allows (attributes must be coarse: bands, districts, categories)",
                        "attribute",
                    )
    except (pa.ArrowInvalid, OSError):
        raise ExtractRejected(
            "the Parquet file is corrupt (unreadable data pages)", "corrupt"
        ) from None
