"""Partners' real files, made here the way Excel and case systems write them: each either
hashes to exactly the tokens of the clean file, or fails with one sentence naming the
file, the row, the column and the fix (and leaves nothing behind)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from openpyxl import Workbook

from linkage.check import check_file
from linkage.encode import hash_file
from linkage.encode.columns import load_mapping, save_mapping
from linkage.errors import InputError
from linkage.spec import Spec, parse_spec, token_column
from tests.conftest import EXAMPLE_SPEC

KEY = bytes(range(32))
FIELDS = ["nhs_number", "forename", "surname", "date_of_birth", "sex", "postcode", "contacts",
          "service_need"]  # fmt: skip
EXCEL_HEADERS = ["NHS No.", "First Name", "SURNAME", "Date of Birth", "Sex", "Post Code",
                 "Contacts", "Service Need"]  # fmt: skip
# real-looking rows: accents, an apostrophe, the surname Lord, the forename Miss
PEOPLE: list[dict[str, Any]] = [
    {"nhs_number": "9434765919", "forename": "Zoë", "surname": "Müller", "dob": date(1984, 2, 29),
     "sex": "F", "postcode": "LS1 5ZJ", "contacts": 3, "service_need": "housing"},
    {"nhs_number": "4010232137", "forename": "Siobhán", "surname": "O'Brien",
     "dob": date(1970, 12, 25), "sex": "F", "postcode": "LS26 5JH", "contacts": 12,
     "service_need": "mental_health"},
    {"nhs_number": "", "forename": "Miss", "surname": "Lord", "dob": date(1955, 7, 15),
     "sex": "F", "postcode": "BD1 1AA", "contacts": 1, "service_need": "other"},
    {"nhs_number": "6091390996", "forename": "François", "surname": "Lefèvre",
     "dob": date(1962, 1, 31), "sex": "M", "postcode": "", "contacts": 0,
     "service_need": "social_care"},
    {"nhs_number": "4505577104", "forename": "Jürgen", "surname": "Sørensen", "dob": date(1991, 8, 19),
     "sex": "M", "postcode": "M1 1AE", "contacts": 25, "service_need": "offending"},
]  # fmt: skip


def _spec(**date_extra: Any) -> Spec:
    data = json.loads(Path(EXAMPLE_SPEC).read_text())
    for ident in data["identifiers"]:
        if ident["name"] == "nhs_number":
            ident["aliases"] = ["NHS No"]
        if ident["name"] == "forename":
            ident["aliases"] = ["First Name", "Given name"]
        if ident["name"] == "dob":
            ident.update(date_extra)
    return parse_spec(data)


def _rows(date_format: str = "%Y-%m-%d", count: Callable[[int], str] = str) -> list[list[str]]:
    return [[p["nhs_number"], p["forename"], p["surname"], p["dob"].strftime(date_format),
             p["sex"], p["postcode"], count(p["contacts"]), p["service_need"]]
            for p in PEOPLE]  # fmt: skip


def _write(path: Path, header: list[str], rows: list[list[str]], *, encoding: str = "utf-8",
           delimiter: str = ",") -> Path:  # fmt: skip
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


def _tokens(path: Path) -> pa.Table:
    table = pq.read_table(path)
    return table.drop([c for c in ("row_ref",) if c in table.column_names])


@pytest.fixture
def clean(tmp_path: Path) -> pa.Table:
    source = _write(tmp_path / "clean.csv", FIELDS, _rows())
    hash_file(_spec(), KEY, source, tmp_path / "clean.parquet")
    return _tokens(tmp_path / "clean.parquet")


@pytest.mark.parametrize(
    ("name", "encoding", "delimiter", "date_format"),
    [
        ("bom.csv", "utf-8-sig", ",", "%d/%m/%Y"),
        ("windows.csv", "cp1252", ",", "%d/%m/%Y"),
        ("semicolons.csv", "cp1252", ";", "%Y-%m-%d"),
        ("tabs.txt", "utf-8", "\t", "%Y%m%d"),
        ("pipes.csv", "utf-8", "|", "%d-%b-%Y"),
        ("excel-unicode.txt", "utf-16", "\t", "%d/%m/%Y"),
    ],
)
def test_encodings_delimiters_and_excel_headers_hash_like_the_clean_file(
    tmp_path: Path, clean: pa.Table, name: str, encoding: str, delimiter: str, date_format: str
) -> None:
    rows = _rows(date_format, count=lambda n: f"{n}.0")  # counts as pandas and Excel write them
    source = _write(tmp_path / name, EXCEL_HEADERS, rows, encoding=encoding, delimiter=delimiter)
    details: dict[str, Any] = {}
    hash_file(_spec(), KEY, source, tmp_path / "out.parquet", details=details)
    assert _tokens(tmp_path / "out.parquet").equals(clean)
    assert details["columns"]["forename"] == "First Name"  # a spec alias
    assert details["columns"]["dob"] == "Date of Birth"  # case, spaces and punctuation ignored
    assert details["columns"]["nhs_number"] == "NHS No."


def test_an_xlsx_workbook_written_by_openpyxl(tmp_path: Path, clean: pa.Table) -> None:
    book = Workbook()
    book.active.title = "Cover"
    book.active.append(["This sheet is a cover note, not the extract"])
    sheet = book.create_sheet("Extract")
    sheet.append(EXCEL_HEADERS)
    for p in PEOPLE:
        nhs = int(p["nhs_number"]) if p["nhs_number"] else None  # Excel keeps numbers as numbers
        born = datetime(p["dob"].year, p["dob"].month, p["dob"].day)  # a real date cell
        sheet.append([nhs, p["forename"], p["surname"], born, p["sex"], p["postcode"] or None,
                      float(p["contacts"]), p["service_need"]])  # fmt: skip
    sheet.append([None] * 8)  # a blank row
    sheet.append(["Total", None, None, None, None, None, 41.0, None])  # and a total row
    path = tmp_path / "extract.xlsx"
    book.save(path)
    rejects = tmp_path / "rejects.csv"
    with pytest.raises(InputError, match=r"extract\.xlsx: row 1: no column for nhs_number"):
        hash_file(_spec(), KEY, path, tmp_path / "o.parquet")  # the first sheet is the cover
    hash_file(_spec(), KEY, path, tmp_path / "out.parquet", sheet="Extract", rejects_path=rejects)
    assert _tokens(tmp_path / "out.parquet").equals(clean)
    # rejects are spreadsheet rows: header row 1, five people in rows 2-6
    assert rejects.read_text().splitlines() == [
        "row,reason", "7,blank row", "8,total row: no identifier, only figures"
    ]


def test_declared_us_dates_hash_like_uk_ones(tmp_path: Path) -> None:
    uk = _write(tmp_path / "uk.csv", FIELDS, _rows("%d/%m/%Y"))
    us = _write(tmp_path / "us.csv", FIELDS, _rows("%m/%d/%Y"))
    hash_file(_spec(), KEY, uk, tmp_path / "uk.parquet")
    hash_file(_spec(formats=["%m/%d/%Y"]), KEY, us, tmp_path / "us.parquet")
    full = token_column("dob", "full")
    assert pq.read_table(tmp_path / "uk.parquet").column(full).equals(
        pq.read_table(tmp_path / "us.parquet").column(full)
    )


def test_undeclared_us_dates_are_refused_naming_file_column_rows_and_fix(tmp_path: Path) -> None:
    source = _write(tmp_path / "us.csv", EXCEL_HEADERS, _rows("%m/%d/%Y"))
    out = tmp_path / "o.parquet"
    with pytest.raises(InputError) as caught:
        hash_file(_spec(), KEY, source, out, rejects_path=tmp_path / "r.csv")
    message = str(caught.value)
    assert message.startswith(f"{source}: column 'Date of Birth' (dob): ")
    assert "day and month swapped" in message and '"formats": ["%m/%d/%Y"]' in message
    assert "\n" not in message and "Zoë" not in message
    assert not out.exists() and not (tmp_path / "r.csv").exists()
    # the check report says the same before anything is hashed, per column, with rows
    report = check_file(_spec(), source)
    dob = next(c for c in report["columns"] if c["field"] == "dob")
    assert dob["swapped"] == len(PEOPLE) and dob["date_formats"]["%m/%d/%Y"] == 1.0
    assert "month-first" in dob["day_month_note"]


def test_mostly_invalid_identifier_refused_with_rows_unless_accepted(tmp_path: Path) -> None:
    rows = _rows()
    for index in (0, 1, 3):
        rows[index][0] = rows[index][0][:9]  # nine digits: not an NHS number
    source = _write(tmp_path / "short.csv", FIELDS, rows)
    with pytest.raises(InputError) as caught:
        hash_file(_spec(), KEY, source, tmp_path / "o.parquet")
    message = str(caught.value)
    assert f"{source}: column 'nhs_number' (nhs_number): 3 of 4 values (75%)" in message
    assert "first at rows 2, 3, 5" in message and "--accept-invalid" in message
    manifest = hash_file(_spec(), KEY, source, tmp_path / "o.parquet", max_invalid=None)
    assert manifest.rows_written == len(PEOPLE)


def test_ambiguous_dates_are_reported_by_check(tmp_path: Path) -> None:
    rows = _rows("%d/%m/%Y")
    for row, day in zip(rows, ("01/02/1980", "03/04/1975", "05/06/1990", "07/08/1966", "09/10/1950"), strict=True):
        row[3] = day
    source = _write(tmp_path / "ambiguous.csv", FIELDS, rows)
    dob = next(c for c in check_file(_spec(), source)["columns"] if c["field"] == "dob")
    assert dob["ambiguous_day_month"] == 1.0
    assert "nothing in the file tells day from month" in dob["day_month_note"]


def test_check_reports_present_missing_invalid_and_distinct(tmp_path: Path) -> None:
    rows = _rows()
    rows[1][5] = "not a postcode"
    source = _write(tmp_path / "x.csv", FIELDS, rows)
    report = check_file(_spec(), source)
    assert report["rows"] == len(PEOPLE) and report["blank_rows"] == 0
    by = {c["field"]: c for c in report["columns"]}
    assert (by["nhs_number"]["present"], by["nhs_number"]["missing"]) == (4, 1)
    assert by["postcode"]["invalid"] == 1 and by["postcode"]["example_rows"] == [3]
    assert by["postcode"]["invalid_reasons"] == {"not a valid UK postcode": 1}
    assert by["surname"]["distinct_share"] == 1.0
    assert "not a postcode" not in json.dumps(report)  # never a value


def test_mapping_file_round_trip_replaces_column_flags(tmp_path: Path, clean: pa.Table) -> None:
    headers = ["Patient NHS", "Given", "Family name", "DOB", "Gender", "PC", "Visits", "Need"]
    source = _write(tmp_path / "odd.csv", headers, _rows(), encoding="cp1252", delimiter=";")
    with pytest.raises(InputError) as caught:
        hash_file(_spec(), KEY, source, tmp_path / "o.parquet")
    assert "row 1: no column for nhs_number" in str(caught.value)
    assert "--column nhs_number=YOUR_COLUMN" in str(caught.value)
    mapping = dict(zip(["nhs_number", "forename", "surname", "dob", "sex", "postcode",
                        "contacts", "need"], headers, strict=True))  # fmt: skip
    details: dict[str, Any] = {}
    hash_file(_spec(), KEY, source, tmp_path / "a.parquet", column_map=mapping, details=details)
    save_mapping(tmp_path / "map.json", details["columns"], details["read"])
    saved = load_mapping(tmp_path / "map.json")
    assert saved.read == {"encoding": "cp1252", "delimiter": "semicolon", "sheet": None}
    hash_file(_spec(), KEY, source, tmp_path / "b.parquet", column_map=saved.columns,
              encoding=saved.read["encoding"], delimiter=saved.read["delimiter"])  # fmt: skip
    assert _tokens(tmp_path / "b.parquet").equals(clean)


@pytest.mark.parametrize(
    ("content", "kwargs", "expected"),
    [
        (b"nhs_number;forename\r\n1;2\r\n", {"delimiter": "comma"}, "row 1: no column for"),
        ((",".join(FIELDS) + "\nZoë,1,2,3,4,5,6,7\n").encode("cp1252"), {"encoding": "utf-8"},
         "in.csv: row 2: text that is not utf8; pass --encoding cp1252"),
        ((",".join(FIELDS) + "\n1,2\n").encode(), {},
         "in.csv: row 2: 2 columns where the header has 8; check the quoting, or pass --delimiter"),
        (b"x", {"delimiter": "colon"}, "--delimiter 'colon': use comma, semicolon, tab or pipe"),
        (b"x", {"encoding": "ebcdic"}, "--encoding 'ebcdic': use one of utf-8, cp1252"),
        (b"\xd0\xcf\x11\xe0old", {}, "an old .xls workbook: save it as .xlsx or CSV"),
        (b"PK\x03\x04broken", {}, "not a readable .xlsx workbook"),
    ],
)
def test_unreadable_files_fail_with_one_sentence(
    tmp_path: Path, content: bytes, kwargs: dict[str, str], expected: str
) -> None:
    source = tmp_path / "in.csv"
    source.write_bytes(content)
    with pytest.raises(InputError) as caught:
        hash_file(_spec(), KEY, source, tmp_path / "o.parquet", **kwargs)
    message = str(caught.value)
    assert expected in message and "\n" not in message
    assert message.startswith(str(source)) or message.startswith("--")
    assert not (tmp_path / "o.parquet").exists()
