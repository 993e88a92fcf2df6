"""`pprl keygen` and `pprl hash` end to end: outputs, errors, atomicity, no plaintext."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from linkage.encode import hash_file, load_secret, read_manifest
from linkage.manifest import key_check_value
from linkage.normalise.names import normalise_name
from linkage.normalise.postcodes import normalise_uk_postcode
from linkage.spec import Spec, fingerprint, output_schema
from linkage.synthetic import generate_partners
from service.cli import app
from tests.conftest import EXAMPLE_EXTRACT, EXAMPLE_SPEC

runner = CliRunner()


def pprl(*args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_keygen_writes_a_private_secret_and_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "k"
    code, stdout, _ = pprl("keygen", path, "--json")
    assert code == 0
    info = json.loads(stdout)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert info["key_check_value"] == key_check_value(load_secret(path))
    before = path.read_bytes()
    code, _, stderr = pprl("keygen", path)
    assert code != 0 and "refusing to overwrite" in stderr
    assert path.read_bytes() == before


def test_hash_the_example_extract(tmp_path: Path, secret_file: Path, spec: Spec) -> None:
    out, rejects = tmp_path / "hashed.parquet", tmp_path / "rejects.csv"
    code, stdout, _ = pprl("hash", "--spec", EXAMPLE_SPEC, "--secret", secret_file,
                           EXAMPLE_EXTRACT, out, "--rejects", rejects, "--json")  # fmt: skip
    assert code == 0, stdout
    result = json.loads(stdout)
    rows_in = sum(1 for _ in EXAMPLE_EXTRACT.open()) - 1
    assert result["rows_written"] + result["rows_rejected"] == rows_in
    assert result["rows_rejected"] == 1
    assert result["invalid_values"]["nhs_number"] == 1
    lines = rejects.read_text().splitlines()
    assert lines[0] == "row,reason" and re.fullmatch(r"\d+,no usable identifier.*", lines[1])
    manifest = read_manifest(out)
    assert manifest.spec_fingerprint == fingerprint(spec)
    assert manifest.key_check_value == key_check_value(load_secret(secret_file))
    assert manifest.rows_written == result["rows_written"] == pq.read_metadata(out).num_rows


def test_output_bytes_hold_no_plaintext_identifier(tmp_path: Path, secret_file: Path) -> None:
    source = tmp_path / "extract.csv"
    table = generate_partners(400, seed=3)["a_and_e"].drop(["person_id"])
    pacsv.write_csv(table, source)
    out = tmp_path / "hashed.parquet"
    code, _, stderr = pprl("hash", "--spec", EXAMPLE_SPEC, "--secret", secret_file, source, out)
    assert code == 0, stderr
    blob = out.read_bytes()
    needles: set[str] = set()
    for row in table.to_pylist():
        for column in ("forename", "surname"):
            if row[column] and len(row[column]) >= 4:
                needles |= {row[column], row[column].upper(), normalise_name(row[column]) or ""}
        if row["nhs_number"]:
            needles |= {row["nhs_number"], row["nhs_number"].replace(" ", "")}
        if row["date_of_birth"]:
            needles.add(row["date_of_birth"])
        if row["postcode"]:
            needles |= {row["postcode"], normalise_uk_postcode(row["postcode"]) or ""}
    needles.discard("")
    found = [n for n in needles if n.encode() in blob]
    assert not found, f"plaintext found in the hashed output: {found[:5]}"
    # and the file is not just compressed plaintext: read it back and look at the values
    cells = {str(v) for col in pq.read_table(out).columns for v in col.to_pylist()}
    assert not cells & needles


def test_parquet_input_and_small_batches_give_the_same_tokens(
    tmp_path: Path, secret_file: Path, spec: Spec
) -> None:
    key = load_secret(secret_file)
    csv_in = tmp_path / "in.csv"
    pq_in = tmp_path / "in.parquet"
    table = generate_partners(300, seed=5)["housing"]
    pacsv.write_csv(table, csv_in)
    pq.write_table(table, pq_in)
    hash_file(spec, key, csv_in, tmp_path / "a.parquet", row_map_path=tmp_path / "a.rows")
    hash_file(spec, key, pq_in, tmp_path / "b.parquet", batch_rows=17,
              row_map_path=tmp_path / "b.rows")  # fmt: skip
    a, b = pq.read_table(tmp_path / "a.parquet"), pq.read_table(tmp_path / "b.parquet")
    assert a.equals(b)
    rows_a, rows_b = pq.read_table(tmp_path / "a.rows"), pq.read_table(tmp_path / "b.rows")
    assert rows_a.equals(rows_b)
    refs = rows_a.column("row_ref").to_pylist()
    assert refs == sorted(refs) and len(refs) == a.num_rows


def test_the_hashed_file_carries_no_row_numbers_the_row_map_keeps_them(
    tmp_path: Path, secret_file: Path, spec: Spec
) -> None:
    """The file `pprl submit` uploads as written has no row_ref; --row-map keeps, for the
    partner, which input row (1-based data row) each hashed row came from, rejects skipped."""
    source = tmp_path / "in.csv"
    table = generate_partners(200, seed=8)["housing"].drop(["person_id"])
    pacsv.write_csv(table, source)
    lines = source.read_text().splitlines()
    blank = ",".join("" for _ in table.column_names)  # data row 4: no identifier at all
    source.write_text("\n".join([*lines[:4], blank, *lines[4:]]) + "\n")
    out, rows = tmp_path / "hashed.parquet", tmp_path / "rows.parquet"
    code, stdout, stderr = pprl("hash", "--spec", EXAMPLE_SPEC, "--secret", secret_file,
                                source, out, "--row-map", rows, "--json")  # fmt: skip
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["row_map"] == str(rows) and result["rows_rejected"] == 1
    hashed = pq.read_table(out)
    assert "row_ref" not in hashed.column_names
    assert hashed.schema.names == [f.name for f in output_schema(spec) if f.name != "row_ref"]
    refs = pq.read_table(rows).column("row_ref").to_pylist()
    assert refs == [1, 2, 3, *range(5, table.num_rows + 2)]  # data row 4 was rejected
    assert read_manifest(out).rows_written == hashed.num_rows == len(refs)
    # the map never contains a token, only row numbers
    assert pq.read_table(rows).column_names == ["row_ref"]
    # --row-map cannot overwrite the extract, and is optional
    code, _, stderr = pprl("hash", "--spec", EXAMPLE_SPEC, "--secret", secret_file, source,
                           tmp_path / "x.parquet", "--row-map", tmp_path / "x.parquet")  # fmt: skip
    assert code != 0 and "row map must be a file of its own" in stderr
    code, _, _ = pprl("hash", "--spec", EXAMPLE_SPEC, "--secret", secret_file, source,
                      tmp_path / "y.parquet")  # fmt: skip
    assert code == 0  # and writes no map unless asked (the refused run left nothing either)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "hashed.parquet", "in.csv", "project.key", "rows.parquet", "y.parquet"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "the file is empty"),
        ("nhs_number,forename\n1,2\n", "no column for surname (looked for 'surname')"),
        (
            "nhs_number,forename,surname,date_of_birth,sex,postcode,contacts,service_need\n",
            "has a header but no rows",
        ),
        (
            "nhs_number,forename,surname,date_of_birth,sex,postcode,contacts,service_need\n"
            ",,,,M,,1,other\n,,,,F,,2,other\n",
            "none of the 2 rows has a usable identifier",
        ),
        (
            "nhs_number,forename,surname,date_of_birth,sex,postcode,contacts,service_need\n"
            '1,Ann,Smith,1980-01-01,F,LS1 1AA,1,other\n2,Bob,"Jones\n',
            "in.csv: row 3: broken quoting",
        ),
    ],
)
def test_bad_input_is_one_clear_error_and_leaves_nothing(
    tmp_path: Path, secret_file: Path, content: str, message: str
) -> None:
    source = tmp_path / "in.csv"
    source.write_text(content)
    out, rejects = tmp_path / "out.parquet", tmp_path / "rejects.csv"
    code, _, stderr = pprl("hash", "--spec", EXAMPLE_SPEC, "--secret", secret_file,
                           source, out, "--rejects", rejects, "--row-map", tmp_path / "rows")  # fmt: skip
    assert code != 0
    assert message in " ".join(stderr.split())
    assert "in.csv" in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "project.key"]


def test_errors_never_quote_row_values(tmp_path: Path, secret_file: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("nhs_number,forename,surname,date_of_birth,sex,postcode,contacts,service_need\n"
                      "1,Ann,Smith,1980-01-01,F,LS1 1AA,1,other\n2,Zebedee,Quixote,x,y\n")  # fmt: skip
    code, stdout, stderr = pprl("hash", "--spec", EXAMPLE_SPEC, "--secret", secret_file,
                                source, tmp_path / "o.parquet")  # fmt: skip
    assert code != 0
    assert "Zebedee" not in stderr + stdout and "Quixote" not in stderr + stdout


def test_bad_secrets(tmp_path: Path) -> None:
    out = tmp_path / "o.parquet"
    short = tmp_path / "short.key"
    short.write_bytes(b"x" * 31)
    short.chmod(0o600)
    code, _, stderr = pprl("hash", "--spec", EXAMPLE_SPEC, "--secret", short, EXAMPLE_EXTRACT, out)
    assert code != 0 and "exactly 32 bytes, this file has 31" in stderr
    loose = tmp_path / "loose.key"
    loose.write_bytes(b"x" * 32)
    loose.chmod(0o644)
    code, _, stderr = pprl("hash", "--spec", EXAMPLE_SPEC, "--secret", loose, EXAMPLE_EXTRACT, out)
    assert code != 0 and "readable by other users" in stderr and "chmod 600" in stderr
    code, _, stderr = pprl(
        "hash", "--spec", EXAMPLE_SPEC, "--secret", tmp_path / "nope", EXAMPLE_EXTRACT, out
    )
    assert code != 0 and "pprl keygen" in stderr
    assert not out.exists()


def test_bad_spec_and_existing_output(tmp_path: Path, secret_file: Path) -> None:
    bad = tmp_path / "spec.json"
    bad.write_text('{"version": "1", "name": "x", "reference_date": "2026-01-01",'
                   ' "identifiers": [{"name": "pc", "type": "postcde"}]}')  # fmt: skip
    out = tmp_path / "o.parquet"
    code, _, stderr = pprl("hash", "--spec", bad, "--secret", secret_file, EXAMPLE_EXTRACT, out)
    assert code != 0 and "identifiers[0].type: unknown type 'postcde'" in stderr
    out.write_bytes(b"keep me")
    code, _, stderr = pprl(
        "hash", "--spec", EXAMPLE_SPEC, "--secret", secret_file, EXAMPLE_EXTRACT, out
    )
    assert code != 0 and "--force" in stderr and out.read_bytes() == b"keep me"
    code, _, _ = pprl(
        "hash", "--spec", EXAMPLE_SPEC, "--secret", secret_file, EXAMPLE_EXTRACT, out, "--force"
    )
    assert code == 0 and read_manifest(out).rows_written > 0


def test_bad_column_mapping_option(tmp_path: Path, secret_file: Path) -> None:
    code, _, stderr = pprl("hash", "--spec", EXAMPLE_SPEC, "--secret", secret_file,
                           EXAMPLE_EXTRACT, tmp_path / "o.parquet", "--column", "dob")  # fmt: skip
    assert code != 0 and "expected FIELD=COLUMN" in stderr


def test_console_script_runs(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "keygen", str(tmp_path / "k"), "--json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["key_check_value"]) == 16


def test_progress_is_drawn_only_once_work_starts(tmp_path: Path, secret_file: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("nhs_number,forename\n1,2\n")
    code, _, stderr = pprl("hash", "--spec", EXAMPLE_SPEC, "--secret", secret_file, source,
                           tmp_path / "o.parquet")  # fmt: skip
    assert code != 0 and "no column for surname" in stderr
    assert "hashing" not in stderr and "rows" not in stderr.split("error:")[0]
    code, _, stderr = pprl("hash", "--spec", EXAMPLE_SPEC, "--secret", secret_file,
                           EXAMPLE_EXTRACT, tmp_path / "o.parquet")  # fmt: skip
    assert code == 0 and " rows" in stderr and " MB" in stderr


def test_check_command_json_and_mapping_then_hash_with_it(
    tmp_path: Path, secret_file: Path
) -> None:
    source = tmp_path / "odd.csv"
    text = EXAMPLE_EXTRACT.read_text().replace('"nhs_number"', '"NHS No."', 1)
    source.write_bytes(text.replace(",", ";").encode("cp1252"))
    mapping = tmp_path / "mapping.json"
    code, stdout, stderr = pprl("check", "--spec", EXAMPLE_SPEC, source, "--column",
                                "nhs_number=NHS No.", "--save-mapping", mapping, "--json")  # fmt: skip
    assert code == 0, stderr
    report = json.loads(stdout)
    assert report["read"] == {"kind": "csv", "encoding": "cp1252", "delimiter": "semicolon",
                              "sheet": None}  # fmt: skip
    nhs = next(c for c in report["columns"] if c["field"] == "nhs_number")
    assert nhs["column"] == "NHS No." and nhs["invalid"] == 1 and nhs["example_rows"]
    code, stdout, _ = pprl("check", "--spec", EXAMPLE_SPEC, source, "--mapping", mapping)
    assert code == 0 and "nhs_number: 1 fails the modulus-11 check" in " ".join(stdout.split())
    code, stdout, stderr = pprl("hash", "--spec", EXAMPLE_SPEC, "--secret", secret_file, source,
                                tmp_path / "o.parquet", "--mapping", mapping, "--json")  # fmt: skip
    assert code == 0, stderr
    assert json.loads(stdout)["columns"]["nhs_number"] == "NHS No."


def test_accept_invalid_overrides_the_refusal(tmp_path: Path, secret_file: Path) -> None:
    source = tmp_path / "bad.csv"
    lines = EXAMPLE_EXTRACT.read_text().splitlines()
    header = lines[0].split(",")
    dob = header.index('"date_of_birth"')
    rows = []
    for line in lines[1:]:
        cells = line.split(",")
        cells[dob] = '"not a date"'
        rows.append(",".join(cells))
    source.write_text("\n".join([lines[0], *rows]) + "\n")
    out = tmp_path / "o.parquet"
    code, _, stderr = pprl("hash", "--spec", EXAMPLE_SPEC, "--secret", secret_file, source, out)
    assert code != 0 and "column 'date_of_birth' (dob)" in " ".join(stderr.split())
    assert not out.exists()
    code, stdout, stderr = pprl("hash", "--spec", EXAMPLE_SPEC, "--secret", secret_file, source,
                                out, "--accept-invalid", "--json")  # fmt: skip
    assert code == 0, stderr
    assert json.loads(stdout)["invalid_values"]["dob"] > 0
