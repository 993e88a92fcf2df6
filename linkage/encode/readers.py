"""Read what partners have: CSV in any usual encoding and delimiter, Excel workbooks, Parquet.

:func:`open_input` looks at a file once (kind, encoding, delimiter, header) and returns a
:class:`Source` that streams chosen columns as batches of strings, so memory does not grow
with the input. Row numbers are spreadsheet rows: the header is row 1, so the first data
row is row 2, and empty lines are rows too, as Excel would show them.

- CSV: UTF-8, UTF-8 with a byte-order mark, UTF-16 (Excel's "Unicode text") and
  Windows-1252 (detected by validating the bytes as UTF-8; ``encoding=`` overrides);
  comma, semicolon, tab or pipe (sniffed from the header and the next lines;
  ``delimiter=`` overrides). Parsing is pyarrow's, multi-threaded and vectorised.
- .xlsx: the first sheet or ``sheet=``, read with openpyxl in read-only streaming mode.
  Date cells become ISO dates; whole numbers lose Excel's ``.0``.
- Parquet: its own columns, cast to strings.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, BinaryIO, Literal

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from linkage.errors import InputError

__all__ = ["DELIMITERS", "Batch", "Source", "open_input"]

#: names accepted by ``--delimiter``, and the characters sniffed
DELIMITERS: dict[str, str] = {"comma": ",", "semicolon": ";", "tab": "\t", "pipe": "|"}
_ENCODINGS = {"utf-8": "utf8", "utf8": "utf8", "utf-8-sig": "utf8", "cp1252": "cp1252",
              "windows-1252": "cp1252", "latin-1": "latin-1", "iso-8859-1": "latin-1",
              "utf-16": "utf-16"}  # fmt: skip
_CSV_BLOCK = 4 << 20  # bytes per CSV block; pyarrow reads a few ahead, so this bounds RSS
_VALIDATE_CHUNK = 16 << 20
Kind = Literal["csv", "xlsx", "parquet"]


@dataclass
class Batch:
    """Some rows of the chosen columns (strings), where they are, and how far the read got."""

    table: pa.Table
    first_row: int  # spreadsheet row of the batch's first row (header = row 1)
    bytes_done: int


@dataclass
class Source:
    """One partner file, looked at: its kind, how it is read, its header."""

    path: Path
    kind: Kind
    header: list[str]
    total_bytes: int
    encoding: str | None = None
    delimiter: str | None = None
    sheet: str | None = None
    total_rows: int | None = None  # data rows when known up front (Parquet, .xlsx)

    def describe(self) -> dict[str, Any]:
        """How the file was read, for reports (``encoding``, ``delimiter``, ``sheet``)."""
        delimiter = next((k for k, v in DELIMITERS.items() if v == self.delimiter), None)
        return {"kind": self.kind, "encoding": self.encoding, "delimiter": delimiter,
                "sheet": self.sheet}  # fmt: skip

    def batches(self, columns: Sequence[str], batch_rows: int = 65_536) -> Iterator[Batch]:
        """Stream ``columns`` (header names) as string columns named as in the header."""
        if self.kind == "parquet":
            return self._parquet(columns, batch_rows)
        if self.kind == "xlsx":
            return self._xlsx(columns, batch_rows)
        return self._csv(columns, batch_rows)

    # -- CSV --------------------------------------------------------------------------
    def _csv(self, columns: Sequence[str], batch_rows: int) -> Iterator[Batch]:
        positions = [self.header.index(c) for c in columns]
        names = [f"c{i}" for i in range(len(self.header))]
        try:
            reader = pacsv.open_csv(
                self.path,
                read_options=pacsv.ReadOptions(
                    block_size=_CSV_BLOCK,
                    encoding=self.encoding or "utf8",
                    column_names=names,
                    skip_rows=1,
                ),
                parse_options=pacsv.ParseOptions(
                    delimiter=self.delimiter or ",",
                    newlines_in_values=False,
                    # an empty line is a row of nulls: rows keep their spreadsheet numbers
                    # and the encoder names it a blank row
                    ignore_empty_lines=False,
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types=dict.fromkeys(names, pa.string()),
                    include_columns=[names[p] for p in positions],
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=True,
                ),
            )
        except (pa.ArrowInvalid, UnicodeDecodeError):
            # pyarrow's message quotes the row: never repeat it
            raise InputError(self._unreadable("near the start")) from None
        sample_rows, sample_bytes = _line_size(self.path)
        data_rows = 0  # data rows read so far (not counting blank lines)
        while True:
            try:
                record_batch = reader.read_next_batch()
            except StopIteration:
                return
            except (pa.ArrowInvalid, UnicodeDecodeError):
                raise InputError(self._unreadable(f"after row {data_rows + 1}")) from None
            table = pa.Table.from_batches([record_batch]).rename_columns(list(columns))
            for start in range(0, table.num_rows, batch_rows):
                piece = table.slice(start, batch_rows)
                data_rows += piece.num_rows
                done = min(int(data_rows * sample_bytes / max(sample_rows, 1)), self.total_bytes)
                yield Batch(piece, 2 + data_rows - piece.num_rows, done)

    def _unreadable(self, where: str) -> str:
        found = self._first_bad_row()
        if found is not None:
            return f"{self.path}: {found}"
        return (
            f"{self.path}: unreadable CSV {where}: a row has a different number of columns "
            f"than the header, broken quoting, or text that is not {self.encoding or 'utf8'} "
            "(pass --encoding or --delimiter if the guess was wrong)"
        )

    def _first_bad_row(self) -> str | None:
        """The first row pyarrow could not read, and why (run only after it failed: pyarrow
        reads blocks ahead and does not say which row). Never quotes the row."""
        codec = "utf-8-sig" if self.encoding in (None, "utf8") else self.encoding
        width = len(self.header)
        with self.path.open("rb") as fh:
            if codec == "utf-16":
                return None  # two bytes a character: lines cannot be split as bytes
            for number, line in enumerate(fh, start=1):
                try:
                    text = line.decode(codec)
                except UnicodeDecodeError:
                    hint = "cp1252" if self.encoding in (None, "utf8") else "utf-8"
                    return (f"row {number}: text that is not {self.encoding or 'utf8'}; pass "
                            f"--encoding {hint} (or save the file as UTF-8 CSV)")  # fmt: skip
                if number == 1 or not text.strip():
                    continue
                if text.count('"') % 2:
                    return f"row {number}: broken quoting (a quote that is never closed)"
                try:
                    fields = next(csv.reader([text], delimiter=self.delimiter or ","), [])
                except csv.Error:
                    return f"row {number}: broken quoting (a quote that is never closed)"
                if len(fields) != width:
                    return (f"row {number}: {len(fields)} columns where the header has {width}; "
                            "check the quoting, or pass --delimiter if the guess was wrong")  # fmt: skip
        return None

    # -- Excel ------------------------------------------------------------------------
    def _xlsx(self, columns: Sequence[str], batch_rows: int) -> Iterator[Batch]:
        positions = [self.header.index(c) for c in columns]
        workbook, sheet = _open_sheet(self.path, self.sheet)
        try:
            rows = sheet.iter_rows(min_row=2, values_only=True)
            number = 2
            while True:
                chunk = list(itertools.islice(rows, batch_rows))
                if not chunk:
                    return
                data = [[_cell_text(r[p]) if p < len(r) else None for r in chunk]
                        for p in positions]  # fmt: skip
                table = pa.table([pa.array(col, pa.string()) for col in data], names=list(columns))
                done = int(self.total_bytes * min((number - 2 + len(chunk)) /
                                                  max(self.total_rows or 1, 1), 1.0))  # fmt: skip
                yield Batch(table, number, done)
                number += len(chunk)
        finally:
            workbook.close()

    # -- Parquet ----------------------------------------------------------------------
    def _parquet(self, columns: Sequence[str], batch_rows: int) -> Iterator[Batch]:
        pf = pq.ParquetFile(self.path)
        done_rows = 0
        try:
            for batch in pf.iter_batches(batch_size=batch_rows, columns=list(columns)):
                table = pa.Table.from_batches([batch])
                table = pa.table([_as_string(table.column(i)) for i in range(table.num_columns)],
                                 names=list(columns))  # fmt: skip
                first = done_rows + 2
                done_rows += table.num_rows
                fraction = done_rows / max(pf.metadata.num_rows, 1)
                yield Batch(table, first, int(self.total_bytes * fraction))
        except (pa.ArrowInvalid, OSError):
            raise InputError(
                f"{self.path}: the Parquet file is corrupt after row {done_rows + 1}"
            ) from None


def _as_string(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return column
    return column.cast(pa.string())


def _line_size(path: Path) -> tuple[int, int]:
    """Lines and bytes in the first 64 KiB: the streaming reader hides its position."""
    with path.open("rb") as fh:
        sample = fh.read(1 << 16)
    return max(sample.count(b"\n"), 1), len(sample)


def _cell_text(value: Any) -> str | None:
    """An Excel cell as the text a CSV export would hold."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time(0) else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _open_sheet(path: Path, sheet: str | None) -> tuple[Any, Any]:
    try:
        import openpyxl  # the partner client's one spreadsheet reader; loaded only for .xlsx
    except ImportError:  # pragma: no cover - a dependency of the package
        raise InputError(f"{path}: reading .xlsx needs openpyxl (pip install openpyxl)") from None
    from openpyxl.utils.exceptions import InvalidFileException

    # a file object, not the name: openpyxl refuses names not ending .xlsx, and partners'
    # files are called anything
    handle = path.open("rb")
    try:
        workbook = openpyxl.load_workbook(handle, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, InvalidFileException):
        handle.close()
        raise InputError(
            f"{path}: not a readable .xlsx workbook (save it again from Excel)"
        ) from None
    book = _Book(workbook, handle)
    names = workbook.sheetnames
    if sheet is None:
        return book, workbook.worksheets[0]
    if sheet not in names:
        book.close()
        raise InputError(f"{path}: no sheet {sheet!r}; sheets: {', '.join(repr(n) for n in names)}")
    return book, workbook[sheet]


class _Book:
    """An open read-only workbook and the file under it, closed together."""

    def __init__(self, workbook: Any, handle: BinaryIO) -> None:
        self.workbook, self.handle = workbook, handle

    def close(self) -> None:
        try:
            self.workbook.close()
        finally:
            self.handle.close()


def _kind(path: Path) -> Kind:
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic == b"PAR1":
        return "parquet"
    if magic == b"PK\x03\x04":
        if path.suffix.lower() in (".xls", ".xlsb", ".ods"):
            raise InputError(f"{path}: save the workbook as .xlsx or CSV (this format is not read)")
        return "xlsx"
    if magic.startswith(b"\xd0\xcf\x11\xe0"):
        raise InputError(f"{path}: an old .xls workbook: save it as .xlsx or CSV from Excel")
    return "csv"


def _detect_encoding(path: Path) -> str:
    """utf8 unless the bytes say otherwise: a BOM, or a byte sequence UTF-8 forbids."""
    with path.open("rb") as fh:
        head = fh.read(4)
        if head.startswith(codecs.BOM_UTF8):
            return "utf8"
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16"
        fh.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")()
        try:
            while chunk := fh.read(_VALIDATE_CHUNK):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            # Windows-1252 is what Excel and most UK case systems write when not UTF-8
            return "cp1252"
    return "utf8"


def _header_text(path: Path, encoding: str) -> str:
    """The first 64 KiB as text, for the header and the delimiter; raises ValueError when
    the header line itself is not ``encoding`` (later rows are checked as they are read)."""
    codec = "utf-8-sig" if encoding == "utf8" else encoding
    with path.open("rb") as fh:
        sample = fh.read(1 << 16)
    text = sample.decode(codec, errors="replace")
    if "\ufffd" in text.split("\n", 1)[0]:
        raise ValueError("header not decodable")
    return text


def _sniff_delimiter(text: str) -> str:
    """The delimiter that splits the header and the next lines into the same count."""
    lines = [line for line in text.splitlines()[:20] if line.strip()]
    if not lines:
        return ","
    best, best_score = ",", (0, 0)
    for char in DELIMITERS.values():
        counts = [len(next(csv.reader([line], delimiter=char))) for line in lines[:-1] or lines]
        header = counts[0]
        if header < 2:
            continue
        consistent = sum(1 for c in counts if c == header)
        score = (consistent, header)
        if score > best_score:
            best, best_score = char, score
    return best


def open_input(
    path: str | Path,
    *,
    encoding: str | None = None,
    delimiter: str | None = None,
    sheet: str | None = None,
) -> Source:
    """Look at ``path`` and say how to read it; raises :class:`InputError` naming the file."""
    source = Path(path)
    if not source.is_file():
        raise InputError(f"{source}: input file not found")
    size = source.stat().st_size
    if size == 0:
        raise InputError(f"{source}: the file is empty")
    kind = _kind(source)
    if kind == "parquet":
        try:
            pf = pq.ParquetFile(source)
        except (pa.ArrowInvalid, OSError):
            raise InputError(f"{source}: not a readable Parquet file") from None
        return Source(source, kind, list(pf.schema_arrow.names), size,
                      total_rows=pf.metadata.num_rows)  # fmt: skip
    if kind == "xlsx":
        workbook, ws = _open_sheet(source, sheet)
        try:
            first = next(ws.iter_rows(min_row=1, max_row=1, values_only=True), None)
            max_row = ws.max_row
            title = ws.title
        finally:
            workbook.close()
        header = [(_cell_text(v) or "").strip() for v in (first or ())]
        _check_header(source, header)
        total = max(max_row - 1, 0) if isinstance(max_row, int) else None
        return Source(source, kind, header, size, sheet=title, total_rows=total)
    if encoding is not None:
        codec = _ENCODINGS.get(encoding.strip().lower())
        if codec is None:
            raise InputError(
                f"--encoding {encoding!r}: use one of utf-8, cp1252 (Windows), latin-1, utf-16"
            )
    else:
        codec = _detect_encoding(source)
    try:
        text = _header_text(source, codec)
    except ValueError:
        raise InputError(
            f"{source}: row 1: not readable as {codec}; pass --encoding (e.g. cp1252)"
        ) from None
    if delimiter is not None:
        char = DELIMITERS.get(delimiter.strip().lower(), delimiter if len(delimiter) == 1 else "")
        if char not in DELIMITERS.values():
            raise InputError(f"--delimiter {delimiter!r}: use comma, semicolon, tab or pipe")
    else:
        char = _sniff_delimiter(text)
    try:
        first_line = next(csv.reader(io.StringIO(text), delimiter=char))
    except StopIteration:
        raise InputError(f"{source}: the file is empty (expected a header row)") from None
    except csv.Error:
        raise InputError(f"{source}: row 1: the header row has broken quoting") from None
    header = [h.strip() for h in first_line]
    _check_header(source, header)
    return Source(source, "csv", header, size, encoding=codec, delimiter=char)


def _check_header(path: Path, header: list[str]) -> None:
    if not any(header):
        raise InputError(
            f"{path}: row 1: the header row is empty (the first row must name the columns)"
        )
