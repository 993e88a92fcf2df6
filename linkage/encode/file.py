"""Hash a whole extract file, streaming, and write the result atomically.

CSV (every column read as text) or Parquet in; Parquet out, batch by batch, so memory
does not grow with the input. The output and the rejects file are written to temporary
names beside their targets and renamed into place only when complete: an error or Ctrl-C
leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import csv
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from linkage.encode.table import Encoder
from linkage.errors import InputError, ManifestError
from linkage.manifest import MANIFEST_KEY, Manifest, key_check_value
from linkage.spec import Spec, fingerprint

__all__ = ["ProgressCallback", "hash_file", "read_manifest"]

#: ``on_progress(rows_done, bytes_done, bytes_total)``
ProgressCallback = Callable[[int, int, int], None]

_PARQUET_MAGIC = b"PAR1"
_CSV_BLOCK = 4 << 20  # bytes per CSV block; pyarrow reads a few ahead, so this bounds RSS


def _is_parquet(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(4) == _PARQUET_MAGIC


def _csv_header(path: Path) -> list[str]:
    with path.open("r", encoding="utf-8-sig", newline="") as fh:
        try:
            header = next(csv.reader(fh))
        except StopIteration:
            raise InputError(f"{path}: the file is empty (expected a header row)") from None
        except (csv.Error, UnicodeDecodeError):
            raise InputError(f"{path}: row 1: not a readable UTF-8 CSV header") from None
    header = [h.strip() for h in header]
    if not any(header):
        raise InputError(f"{path}: row 1: the header row is empty")
    return header


def _csv_batches(path: Path, encoder: Encoder, batch_rows: int) -> Iterator[tuple[pa.Table, int]]:
    header = _csv_header(path)
    encoder.check_columns(header, str(path))
    needed = list(encoder.required_columns())
    total = path.stat().st_size
    with path.open("rb") as fh:
        sample = fh.read(1 << 16)
    line_bytes = len(sample) / max(sample.count(b"\n"), 1)
    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=_CSV_BLOCK, encoding="utf8"),
            parse_options=pacsv.ParseOptions(newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()),
                include_columns=needed,
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError):
        # pyarrow parses the first block on open; its message quotes the row: never repeat it
        raise InputError(
            f"{path}: unreadable CSV near the start: a row has a different number of columns "
            "than the header, broken quoting, or invalid UTF-8"
        ) from None
    rows = 0
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except (pa.ArrowInvalid, UnicodeDecodeError):
            # pyarrow's own message quotes the offending line: never repeat it.
            raise InputError(
                f"{path}: unreadable CSV after row {rows + 1}: a row has a different number "
                "of columns than the header, broken quoting, or invalid UTF-8"
            ) from None
        table = pa.Table.from_batches([batch])
        for start in range(0, table.num_rows, batch_rows):
            piece = table.slice(start, batch_rows)
            rows += piece.num_rows
            # the streaming reader does not expose its byte position: estimate it
            yield piece, min(int(rows * line_bytes), total)


def _parquet_batches(
    path: Path, encoder: Encoder, batch_rows: int
) -> Iterator[tuple[pa.Table, int]]:
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError):
        raise InputError(f"{path}: not a readable Parquet file") from None
    encoder.check_columns(pf.schema_arrow.names, str(path))
    needed = list(encoder.required_columns())
    total = path.stat().st_size
    done_rows = 0
    try:
        for batch in pf.iter_batches(batch_size=batch_rows, columns=needed):
            done_rows += batch.num_rows
            fraction = done_rows / max(pf.metadata.num_rows, 1)
            yield pa.Table.from_batches([batch]), int(total * fraction)
    except (pa.ArrowInvalid, OSError):
        raise InputError(f"{path}: the Parquet file is corrupt after row {done_rows}") from None


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
    column_map: Mapping[str, str] | None = None,
    batch_rows: int = 65_536,
    force: bool = False,
    on_progress: ProgressCallback | None = None,
    invalid_counts: dict[str, int] | None = None,
) -> Manifest:
    """Hash ``input_path`` (CSV or Parquet) to a hashed Parquet extract at ``output_path``.

    Returns the manifest written into the file. ``invalid_counts``, when given, receives
    per-field counts of values that were present but invalid (e.g. a bad NHS number).
    Raises :class:`InputError` naming the file, row and column on bad input; nothing is
    left at ``output_path`` or ``rejects_path`` on any error.
    """
    source = Path(input_path)
    target = Path(output_path)
    if not source.is_file():
        raise InputError(f"{source}: input file not found")
    if source.resolve() == target.resolve():
        raise InputError(f"{target}: the output must not overwrite the input")
    if source.stat().st_size == 0:
        raise InputError(f"{source}: the file is empty")
    encoder = Encoder(spec, key, column_map)
    batches = (
        _parquet_batches(source, encoder, batch_rows)
        if _is_parquet(source)
        else _csv_batches(source, encoder, batch_rows)
    )
    total_bytes = source.stat().st_size
    written = rejected = rows_in = 0
    counts: dict[str, int] = {}
    with contextlib.ExitStack() as stack:
        out_tmp = stack.enter_context(_atomic_path(target, force))
        rej_file = None
        if rejects_path is not None:
            rej_tmp = stack.enter_context(_atomic_path(Path(rejects_path), force))
            rej_file = stack.enter_context(rej_tmp.open("w", newline="", encoding="utf-8"))
            rej_file.write("row,reason\n")
        writer = stack.enter_context(
            pq.ParquetWriter(out_tmp, encoder.schema, compression="zstd", write_statistics=False)
        )
        for table, bytes_done in batches:
            result = encoder.encode(table, row_offset=rows_in)
            rows_in += result.rows_in
            if result.table.num_rows:
                writer.write_table(result.table)
            written += result.table.num_rows
            rejected += len(result.rejects)
            for name, count in result.invalid_counts.items():
                counts[name] = counts.get(name, 0) + count
            if rej_file is not None:
                rej_file.writelines(f"{row},{reason}\n" for row, reason in result.rejects)
            if on_progress is not None:
                on_progress(rows_in, bytes_done, total_bytes)
        if rows_in == 0:
            raise InputError(f"{source}: the file has a header but no rows")
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
    if invalid_counts is not None:
        invalid_counts.update(counts)
    return manifest


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
