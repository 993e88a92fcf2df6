"""Hash a whole extract file, streaming, and write the result atomically.

CSV, .xlsx or Parquet in (see :mod:`linkage.encode.readers`); Parquet out, batch by
batch, so memory does not grow with the input. The output and the rejects file are
written to temporary names beside their targets and renamed into place only when
complete: an error, a refusal or Ctrl-C leaves nothing behind.

The hashed file holds tokens and attributes only: it is what ``pprl submit`` seals and
uploads, byte for byte, with no decoding or rewriting. The input row each hashed row came
from (``row_ref``) is the partner's own business and never uploaded; with ``row_map_path``
it is written to a separate local file, one ``row_ref`` per hashed row in the same order.

Rejects are numbered as spreadsheet rows: the header is row 1, the first data row is
row 2. An identifier column with more than ``max_invalid`` of its values invalid (or,
for dates, readable only with day and month swapped) is refused, naming the column, the
formats expected and the first rows, rather than hashed with the values silently lost.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from linkage.encode.columns import resolve_columns
from linkage.encode.expected import DEFAULT_MAX_INVALID, UK_DATE_FORMATS, expected_values
from linkage.encode.readers import open_input
from linkage.encode.table import Encoder
from linkage.errors import InputError, ManifestError
from linkage.manifest import MANIFEST_KEY, Manifest, key_check_value
from linkage.spec import ROW_REF_COLUMN, Spec, fingerprint

__all__ = [
    "DEFAULT_MAX_INVALID",
    "ROW_MAP_KEY",
    "ProgressCallback",
    "hash_file",
    "read_manifest",
]

#: key-value metadata of a row map: which extract (by its manifest) the rows belong to
ROW_MAP_KEY = "pprl.row_map"
_ROW_MAP_SCHEMA = pa.schema([pa.field(ROW_REF_COLUMN, pa.int64(), nullable=False)])

#: ``on_progress(rows_done, bytes_done, bytes_total)``
ProgressCallback = Callable[[int, int, int], None]



@contextlib.contextmanager
def _atomic_path(target: Path, force: bool) -> Iterator[Path]:
    if target.exists() and not force:
        raise InputError(f"{target}: already exists (use --force to replace it)")
    if target.is_dir():
        raise InputError(f"{target}: is a directory")
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise InputError(f"{directory}: output directory does not exist")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=directory)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with tmp.open("rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def hash_file(
    spec: Spec,
    key: bytes,
    input_path: str | Path,
    output_path: str | Path,
    *,
    rejects_path: str | Path | None = None,
    row_map_path: str | Path | None = None,
    column_map: Mapping[str, str] | None = None,
    batch_rows: int = 65_536,
    force: bool = False,
    on_progress: ProgressCallback | None = None,
    invalid_counts: dict[str, int] | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
    sheet: str | None = None,
    max_invalid: float | None = DEFAULT_MAX_INVALID,
    details: dict[str, Any] | None = None,
) -> Manifest:
    """Hash ``input_path`` (CSV, .xlsx or Parquet) to a hashed Parquet extract at ``output_path``.

    Returns the manifest written into the file. ``invalid_counts``, when given, receives
    per-field counts of values that were present but invalid (e.g. a bad NHS number);
    ``details`` receives how the file was read (``read``) and which column fed each field
    (``columns``), as a mapping file records them. ``max_invalid=None`` accepts any share
    of invalid values. Raises :class:`InputError` naming the file, row and column on bad
    input; nothing is left at ``output_path``, ``rejects_path`` or ``row_map_path`` on
    any error. ``row_map_path``, when given, receives the input row number (``row_ref``,
    1-based data rows) of each hashed row, in the hashed file's order, for the partner's
    own use; it is never uploaded.
    """
    source = Path(input_path)
    target = Path(output_path)
    if source.exists() and target.exists() and source.resolve() == target.resolve():
        raise InputError(f"{target}: the output must not overwrite the input")
    if row_map_path is not None and Path(row_map_path).absolute() in (
        target.absolute(),
        source.absolute(),
    ):
        raise InputError(f"{row_map_path}: the row map must be a file of its own")
    reader = open_input(source, encoding=encoding, delimiter=delimiter, sheet=sheet)
    columns = resolve_columns(spec, reader.header, str(source), column_map)
    if details is not None:
        details.update({"read": reader.describe(), "columns": dict(columns)})
    encoder = Encoder(spec, key, columns)
    total_bytes = reader.total_bytes
    written = rejected = rows_in = 0
    counts: dict[str, int] = {}
    present: dict[str, int] = {}
    swapped: dict[str, int] = {}
    first_bad: dict[str, list[int]] = {}
    with contextlib.ExitStack() as stack:
        out_tmp = stack.enter_context(_atomic_path(target, force))
        rej_file = None
        if rejects_path is not None:
            rej_tmp = stack.enter_context(_atomic_path(Path(rejects_path), force))
            rej_file = stack.enter_context(rej_tmp.open("w", newline="", encoding="utf-8"))
            rej_file.write("row,reason\n")
        writer = stack.enter_context(
            pq.ParquetWriter(out_tmp, encoder.upload_schema, compression="zstd",
                             write_statistics=False)
        )  # fmt: skip
        map_writer = None
        if row_map_path is not None:
            map_tmp = stack.enter_context(_atomic_path(Path(row_map_path), force))
            map_writer = stack.enter_context(
                pq.ParquetWriter(map_tmp, _ROW_MAP_SCHEMA, compression="zstd")
            )
        for batch in reader.batches(list(dict.fromkeys(columns.values())), batch_rows):
            result = encoder.encode(batch.table, row_offset=rows_in)
            rows_in += result.rows_in
            if result.table.num_rows:
                writer.write_table(result.table.drop_columns([ROW_REF_COLUMN]))
                if map_writer is not None:
                    map_writer.write_table(result.table.select([ROW_REF_COLUMN]))
            written += result.table.num_rows
            rejected += len(result.rejects)
            _add(counts, result.invalid_counts)
            _add(present, result.present_counts)
            _add(swapped, result.swapped_counts)
            for name, rows in result.invalid_rows.items():
                first_bad.setdefault(name, [])
                first_bad[name] += rows[: _EXAMPLES - len(first_bad[name])]
            if rej_file is not None:
                # the encoder counts data rows from 1; the spreadsheet's header is row 1
                rej_file.writelines(f"{row + 1},{reason}\n" for row, reason in result.rejects)
            if on_progress is not None:
                on_progress(rows_in, batch.bytes_done, total_bytes)
        if rows_in == 0:
            raise InputError(f"{source}: the file has a header but no rows")
        if max_invalid is not None:
            _refuse_invalid(spec, source, columns, present, counts, swapped, first_bad,
                            max_invalid)  # fmt: skip
        if written == 0:
            raise InputError(
                f"{source}: none of the {rows_in} rows has a usable identifier; "
                "check the column mapping and formats"
            )
        manifest = Manifest(
            spec_fingerprint=fingerprint(spec),
            key_check_value=key_check_value(key),
            rows_written=written,
            rows_rejected=rejected,
            tool_version=_tool_version(),
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        writer.add_key_value_metadata({MANIFEST_KEY: manifest.to_json()})
        if map_writer is not None:
            map_writer.add_key_value_metadata({ROW_MAP_KEY: manifest.to_json()})
    if invalid_counts is not None:
        invalid_counts.update(counts)
    return manifest


_EXAMPLES = 5


def _add(total: dict[str, int], more: Mapping[str, int]) -> None:
    for name, count in more.items():
        total[name] = total.get(name, 0) + count


def _refuse_invalid(
    spec: Spec,
    source: Path,
    columns: Mapping[str, str],
    present: Mapping[str, int],
    invalid: Mapping[str, int],
    swapped: Mapping[str, int],
    first_bad: Mapping[str, list[int]],
    max_invalid: float,
) -> None:
    """One sentence for the first identifier column over the invalid (or swapped) share."""
    for ident in spec.identifiers:
        seen = present.get(ident.name, 0)
        if not seen:
            continue
        column = columns[ident.name]
        bad = invalid.get(ident.name, 0)
        if bad / seen > max_invalid:
            rows = ", ".join(str(r + 1) for r in first_bad.get(ident.name, []))
            raise InputError(
                f"{source}: column {column!r} ({ident.name}): {bad:,} of {seen:,} values "
                f"({bad / seen:.0%}) are not {expected_values(ident)}, first at rows {rows}; "
                "fix the column (run `pprl check` for a report) or declare its formats in "
                "the spec, or pass --accept-invalid to hash them as missing"
            )
        turned = swapped.get(ident.name, 0)
        if ident.type == "date" and turned / seen > max_invalid:
            formats = " or ".join(ident.formats or UK_DATE_FORMATS)
            raise InputError(
                f"{source}: column {column!r} ({ident.name}): {turned:,} of {seen:,} dates "
                f"({turned / seen:.0%}) are valid only with day and month swapped under "
                f"{formats}, so the file is probably written the other way round; declare "
                f'its format in the spec (e.g. "formats": ["%m/%d/%Y"] for {ident.name}), '
                "or pass --accept-invalid to hash them swapped"
            )


def _tool_version() -> str:
    from linkage import __version__

    return f"pprl {__version__}"


def read_manifest(path: str | Path) -> Manifest:
    """The manifest of a hashed extract, read from the Parquet footer only."""
    p = Path(path)
    try:
        metadata = pq.read_metadata(p).metadata or {}
    except FileNotFoundError:
        raise ManifestError(f"{p}: file not found") from None
    except (pa.ArrowInvalid, OSError):
        raise ManifestError(f"{p}: not a readable Parquet file") from None
    return Manifest.from_json(metadata.get(MANIFEST_KEY))
