"""`pprl keygen` and `pprl hash`: what a partner runs on its own machine.

Neither command talks to the service: the secret and the plaintext extract never leave
the partner's machine; only the hashed Parquet file does (with `pprl submit`).
"""

from __future__ import annotations

from pathlib import Path

import typer

from linkage.encode import hash_file, load_secret, new_secret, write_secret
from linkage.errors import InputError
from linkage.manifest import key_check_value
from linkage.spec import load_spec
from service.cli._app import JsonOption, app, emit, err, errors_as_messages, out, progress


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


@app.command("hash")
def hash_command(
    input_path: Path = typer.Argument(
        ..., metavar="INPUT", help="Extract: CSV (UTF-8, header row) or Parquet."
    ),
    output_path: Path = typer.Argument(..., metavar="OUTPUT", help="Hashed Parquet file to write."),
    spec_path: Path = typer.Option(..., "--spec", help="The project's linkage spec (JSON)."),
    secret_path: Path = typer.Option(
        ..., "--secret", help="The project secret from `pprl keygen`."
    ),
    rejects: Path | None = typer.Option(
        None, "--rejects", help="Write rejected rows here as row number + reason (never values)."
    ),
    columns: list[str] = typer.Option(
        [], "--column", help="Map a spec field to your column name: FIELD=COLUMN (repeatable)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace OUTPUT / --rejects if they exist."),
    as_json: bool = JsonOption,
) -> None:
    """Normalise and key-hash an extract into tokens + attributes + a row reference.

    Streams in batches, so memory stays flat for any input size. The output is written
    atomically: on an error or Ctrl-C nothing is left at OUTPUT.
    """
    invalid: dict[str, int] = {}
    with errors_as_messages():
        spec = load_spec(spec_path)
        key = load_secret(secret_path)
        column_map = parse_column_map(columns)
        with progress("bytes") as bar:
            task = bar.add_task(f"hashing {input_path.name}", total=None)

            def on_progress(rows: int, done: int, total: int) -> None:
                bar.update(task, completed=done, total=total, description=f"hashing {rows:,} rows")

            manifest = hash_file(
                spec,
                key,
                input_path,
                output_path,
                rejects_path=rejects,
                column_map=column_map,
                force=force,
                on_progress=on_progress,
                invalid_counts=invalid,
            )
            bar.update(task, completed=input_path.stat().st_size, total=input_path.stat().st_size)
    invalid = {field: count for field, count in invalid.items() if count}
    result = {
        "output": str(output_path),
        "rows_written": manifest.rows_written,
        "rows_rejected": manifest.rows_rejected,
        "invalid_values": invalid,
        "spec_fingerprint": manifest.spec_fingerprint,
        "key_check_value": manifest.key_check_value,
        "rejects": str(rejects) if rejects else None,
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
        if manifest.rows_rejected and not rejects:
            err.print("hint: pass --rejects FILE to list the rejected row numbers and reasons")

    emit(result, as_json, render)
