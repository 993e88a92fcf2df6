"""`pprl keygen`, `pprl check` and `pprl hash`: what a partner runs on its own machine.

None of them talks to the service: the secret and the plaintext extract never leave
the partner's machine; only the hashed Parquet file does (with `pprl submit`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from linkage.encode.columns import load_mapping, save_mapping
from linkage.encode.expected import DEFAULT_MAX_INVALID
from linkage.encode.secret import load_secret, new_secret, write_secret
from linkage.errors import InputError
from linkage.manifest import key_check_value
from linkage.spec import load_spec
from service.cli._app import JsonOption, app, emit, err, errors_as_messages, out


def parse_column_map(pairs: list[str]) -> dict[str, str]:
    """``["dob=DateOfBirth", ...]`` -> ``{"dob": "DateOfBirth"}``, with a clear error."""
    mapping: dict[str, str] = {}
    for pair in pairs:
        field, sep, column = pair.partition("=")
        if not sep or not field.strip() or not column.strip():
            raise InputError(f"--column {pair!r}: expected FIELD=COLUMN, e.g. dob=DateOfBirth")
        mapping[field.strip()] = column.strip()
    return mapping


@app.command()
def keygen(
    out_path: Path = typer.Argument(..., metavar="OUT", help="Where to write the new secret."),
    as_json: bool = JsonOption,
) -> None:
    """Make a new project secret (32 random bytes, file mode 0600) and print its key check value.

    Share the file with the other partners out of band (never with the operator). The key
    check value is safe to share: every partner hashing under the same secret sees the same one.
    """
    with errors_as_messages():
        key = new_secret()
        write_secret(out_path, key)
    kcv = key_check_value(key)
    emit(
        {"secret": str(out_path), "key_check_value": kcv},
        as_json,
        lambda: out.print(f"wrote {out_path} (mode 0600)\nkey check value: {kcv}"),
    )


class _LazyBar:
    """A progress bar in rows and MB, drawn only once the first rows are read (so an
    argument error or an unreadable file prints its sentence alone)."""

    def __init__(self, verb: str, name: str) -> None:
        self.verb, self.name = verb, name
        self.bar: Progress | None = None
        self.task: TaskID | None = None

    def update(self, rows: int, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[rows]:,} rows"),
                TextColumn("{task.fields[mb]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=err,
            )
            self.bar.start()
            self.task = self.bar.add_task(f"{self.verb} {self.name}", total=total, rows=0, mb="")
        assert self.task is not None
        mb = f"{done / 1e6:,.1f}/{total / 1e6:,.1f} MB"
        self.bar.update(self.task, completed=done, total=total, rows=rows, mb=mb)

    def close(self, finished: bool) -> None:
        if self.bar is not None:
            if finished and self.task is not None:
                task = self.bar.tasks[0]
                self.bar.update(self.task, completed=task.total)
            self.bar.stop()


@contextmanager
def _bar(verb: str, name: str) -> Iterator[_LazyBar]:
    bar = _LazyBar(verb, name)
    finished = False
    try:
        yield bar
        finished = True
    finally:
        bar.close(finished)


_ENCODING = typer.Option(
    None,
    "--encoding",
    help="CSV text encoding: utf-8, cp1252 (Windows), latin-1, utf-16. Default: detected.",
)
_DELIMITER = typer.Option(
    None, "--delimiter", help="CSV delimiter: comma, semicolon, tab or pipe. Default: sniffed."
)
_SHEET = typer.Option(None, "--sheet", help=".xlsx: the sheet to read. Default: the first.")
_COLUMNS = typer.Option(
    [], "--column", help="Map a spec field to your column name: FIELD=COLUMN (repeatable)."
)
_MAPPING = typer.Option(
    None, "--mapping", help="A mapping file saved with --save-mapping (columns, encoding...)."
)
_SAVE_MAPPING = typer.Option(
    None, "--save-mapping", help="Write the columns and read options used to FILE, for next time."
)


def _read_options(
    mapping_path: Path | None,
    columns: list[str],
    encoding: str | None,
    delimiter: str | None,
    sheet: str | None,
) -> tuple[dict[str, str], dict[str, str | None]]:
    """Field -> column and read options: the mapping file, overridden by flags."""
    column_map: dict[str, str] = {}
    read: dict[str, str | None] = {}
    if mapping_path is not None:
        saved = load_mapping(mapping_path)
        column_map.update(saved.columns)
        read.update(saved.read)
    column_map.update(parse_column_map(columns))
    for key, value in (("encoding", encoding), ("delimiter", delimiter), ("sheet", sheet)):
        if value is not None:
            read[key] = value
    return column_map, read


@app.command("hash")
def hash_command(
    input_path: Path = typer.Argument(
        ..., metavar="INPUT", help="Extract: CSV (any usual encoding/delimiter), .xlsx or Parquet."
    ),
    output_path: Path = typer.Argument(..., metavar="OUTPUT", help="Hashed Parquet file to write."),
    spec_path: Path = typer.Option(..., "--spec", help="The project's linkage spec (JSON)."),
    secret_path: Path = typer.Option(
        ..., "--secret", help="The project secret from `pprl keygen`."
    ),
    rejects: Path | None = typer.Option(
        None,
        "--rejects",
        help="Write rejected rows here as spreadsheet row number (header = row 1) + reason, "
        "never values.",
    ),
    row_map: Path | None = typer.Option(
        None,
        "--row-map",
        help="Also write, for your own records, the input row number of each hashed row "
        "(Parquet, column row_ref, same order). It stays on your machine: OUTPUT does not "
        "carry row numbers and `pprl submit` never sends this file.",
    ),
    columns: list[str] = _COLUMNS,
    mapping_path: Path | None = _MAPPING,
    save_mapping_path: Path | None = _SAVE_MAPPING,
    encoding: str | None = _ENCODING,
    delimiter: str | None = _DELIMITER,
    sheet: str | None = _SHEET,
    accept_invalid: bool = typer.Option(
        False, "--accept-invalid", help="Hash even when an identifier column is mostly invalid."
    ),
    max_invalid: float = typer.Option(
        DEFAULT_MAX_INVALID,
        "--max-invalid",
        min=0.0,
        max=1.0,
        help="Refuse when more than this share of an identifier column is invalid.",
    ),
    force: bool = typer.Option(False, "--force", help="Replace existing output files."),
    as_json: bool = JsonOption,
) -> None:
    """Normalise and key-hash an extract into tokens + attributes (the file you submit).

    Streams in batches, so memory stays flat for any input size. The output is written
    atomically: on an error, a refusal or Ctrl-C nothing is left at OUTPUT. Refuses an
    identifier column with more than --max-invalid of its values invalid, naming the
    column, the formats expected and the first rows (run `pprl check` first for a report).
    """
    # the encoder (numpy, pyarrow) is imported by the commands that use it: `pprl serve`
    # runs in this CLI process, and the API must not carry it
    from linkage.encode.file import hash_file

    invalid: dict[str, int] = {}
    details: dict[str, Any] = {}
    with errors_as_messages():
        spec = load_spec(spec_path)
        key = load_secret(secret_path)
        column_map, read = _read_options(mapping_path, columns, encoding, delimiter, sheet)
        with _bar("hashing", input_path.name) as bar:
            manifest = hash_file(
                spec,
                key,
                input_path,
                output_path,
                rejects_path=rejects,
                row_map_path=row_map,
                column_map=column_map,
                force=force,
                on_progress=bar.update,
                invalid_counts=invalid,
                encoding=read.get("encoding"),
                delimiter=read.get("delimiter"),
                sheet=read.get("sheet"),
                max_invalid=None if accept_invalid else max_invalid,
                details=details,
            )
        if save_mapping_path is not None:
            save_mapping(save_mapping_path, details["columns"], details["read"])
    invalid = {field: count for field, count in invalid.items() if count}
    result = {
        "output": str(output_path),
        "rows_written": manifest.rows_written,
        "rows_rejected": manifest.rows_rejected,
        "invalid_values": invalid,
        "spec_fingerprint": manifest.spec_fingerprint,
        "key_check_value": manifest.key_check_value,
        "rejects": str(rejects) if rejects else None,
        "row_map": str(row_map) if row_map else None,
        "columns": details["columns"],
        "read": details["read"],
        "mapping_saved": str(save_mapping_path) if save_mapping_path else None,
    }

    def render() -> None:
        out.print(
            f"wrote {output_path}: {manifest.rows_written:,} rows hashed, "
            f"{manifest.rows_rejected:,} rejected"
            + (f" (listed in {rejects})" if rejects and manifest.rows_rejected else "")
        )
        for field, count in sorted(invalid.items()):
            out.print(f"  {field}: {count:,} invalid values treated as missing")
        out.print(f"key check value: {manifest.key_check_value}")
        if row_map is not None:
            out.print(f"row numbers kept in {row_map} (stays with you; not uploaded)")
        if save_mapping_path is not None:
            out.print(
                f"mapping saved to {save_mapping_path}: next time pass --mapping {save_mapping_path}"
            )
        if manifest.rows_rejected and not rejects:
            err.print("hint: pass --rejects FILE to list the rejected row numbers and reasons")

    emit(result, as_json, render)


@app.command("check")
def check_command(
    input_path: Path = typer.Argument(
        ..., metavar="INPUT", help="Extract: CSV (any usual encoding/delimiter), .xlsx or Parquet."
    ),
    spec_path: Path = typer.Option(..., "--spec", help="The project's linkage spec (JSON)."),
    columns: list[str] = _COLUMNS,
    mapping_path: Path | None = _MAPPING,
    save_mapping_path: Path | None = _SAVE_MAPPING,
    encoding: str | None = _ENCODING,
    delimiter: str | None = _DELIMITER,
    sheet: str | None = _SHEET,
    as_json: bool = JsonOption,
) -> None:
    """A data-quality report on an extract before it is hashed (nothing is written or sent).

    Per column: values present and missing, invalid values and why, the share of distinct
    values, for dates the formats found and day/month ambiguity, and the first rows to
    look at, as spreadsheet rows (the header is row 1). Never prints a value.
    """
    from linkage.check import check_file

    with errors_as_messages():
        spec = load_spec(spec_path)
        column_map, read = _read_options(mapping_path, columns, encoding, delimiter, sheet)
        with _bar("checking", input_path.name) as bar:
            report = check_file(spec, input_path, column_map=column_map,
                                encoding=read.get("encoding"), delimiter=read.get("delimiter"),
                                sheet=read.get("sheet"), on_progress=bar.update)  # fmt: skip
        if save_mapping_path is not None:
            used = {c["field"]: c["column"] for c in report["columns"]}
            save_mapping(save_mapping_path, used, report["read"])
    emit(report, as_json, lambda: _render_check(report))


def _render_check(report: dict[str, Any]) -> None:
    read = report["read"]
    how = ", ".join(f"{k} {v}" for k, v in read.items() if v)
    out.print(f"{report['file']}: {report['rows']:,} rows ({how}); "
              f"{report['blank_rows']:,} blank")  # fmt: skip
    table = Table("field", "column", "present", "missing", "invalid", "distinct", "first rows")
    notes: list[str] = []
    for c in report["columns"]:
        share = f" ({c['invalid_share']:.0%})" if c["invalid"] else ""
        table.add_row(c["field"], c["column"], f"{c['present']:,}", f"{c['missing']:,}",
                      f"{c['invalid']:,}{share}", f"{c['distinct_share']:.0%}",
                      ", ".join(map(str, c["example_rows"])))  # fmt: skip
        for reason, count in c["invalid_reasons"].items():
            notes.append(
                f"{c['field']}: {count:,} {reason} (expected {c['expected'] or 'valid values'})"
            )
        if "date_formats" in c:
            found = ", ".join(f"{f} {s:.0%}" for f, s in c["date_formats"].items()) or "none"
            notes.append(f"{c['field']}: formats found: {found}; day/month ambiguous: "
                         f"{c['ambiguous_day_month']:.0%}")  # fmt: skip
            if c["day_month_note"]:
                notes.append(f"{c['field']}: {c['day_month_note']}")
            if c["swapped"]:
                notes.append(f"{c['field']}: {c['swapped']:,} dates valid only with day and "
                             "month swapped (read as the swap)")  # fmt: skip
    out.print(table)
    for note in notes:
        out.print(f"  {note}")
