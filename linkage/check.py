"""`pprl check`: a partner's data-quality report on its extract, before anything is hashed.

Per column the spec reads: values present and missing, invalid values with the reason,
the share of distinct values, for dates the formats the values fit and how many are
ambiguous between day-first and month-first, and the first offending rows as
spreadsheet rows (header = row 1). Only counts and row numbers: never a value.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from linkage.encode.columns import resolve_columns
from linkage.encode.expected import expected_values
from linkage.encode.readers import open_input
from linkage.normalise import (
    normalise_generic,
    normalise_generic_postcode,
    normalise_name,
    normalise_sex,
    normalise_uk_postcode,
)
from linkage.normalise.dates import read_date_cached
from linkage.normalise.nhs import nhs_check_digit_ok
from linkage.spec import AttributeSpec, IdentifierSpec, Spec

__all__ = ["CANDIDATE_DATE_FORMATS", "check_file", "date_formats_report"]

#: formats `pprl check` tries on a date column to tell the partner what its file holds
CANDIDATE_DATE_FORMATS = (
    "%Y-%m-%d", "%d/%m/%Y", "%m/%d/%Y", "%Y%m%d", "%d-%m-%Y", "%m-%d-%Y", "%d.%m.%Y",
    "%d/%m/%y", "%m/%d/%y", "%d-%m-%y", "%Y/%m/%d", "%d-%b-%Y", "%d %b %Y", "%d %B %Y",
    "%d-%b-%y", "%b %d, %Y", "%B %d, %Y",
)  # fmt: skip
_EXAMPLES = 5
_DATE_VALUES_CAP = 200_000  # distinct date strings kept for the format report
_FORMAT_SAMPLE = 5_000  # most frequent distinct date strings the formats are tried on
_SEPARATORS = re.compile(r"[\s\-./]")
_WHOLE_NUMBER = re.compile(r"^\s*\+?(\d+)(?:\.0*)?\s*$")
# a pa.scalar, not "": comparing with a Python str makes pyarrow import pandas (0.25 s)
_EMPTY = pa.scalar("", pa.string())

Reason = Callable[[str], str | None]


def _nhs_reason(raw: str) -> str | None:
    digits = _SEPARATORS.sub("", raw)
    if len(digits) != 10 or not digits.isascii() or not digits.isdigit():
        return "not 10 digits"
    if not nhs_check_digit_ok(digits):
        return "fails the modulus-11 check"
    if len(set(digits)) == 1:
        return "a placeholder (one digit repeated)"
    return None


def _identifier_reason(ident: IdentifierSpec, reference: date) -> Reason:
    kind = ident.type
    if kind == "nhs_number":
        return _nhs_reason
    if kind == "date":
        formats = ident.formats

        def date_reason(raw: str) -> str | None:
            status = read_date_cached(raw, reference, formats)[1]
            if status == "invalid":
                return "not a date in the expected formats"
            if status == "out_of_range":
                return "before 1900 or after the spec's reference date"
            return None

        return date_reason
    if kind == "uk_postcode":
        return lambda raw: None if normalise_uk_postcode(raw) else "not a valid UK postcode"
    if kind == "sex":
        return lambda raw: None if normalise_sex(raw) else "not a known sex code (or 'unknown')"
    if kind in ("forename", "surname"):
        return lambda raw: None if normalise_name(raw) else "no letters"
    if kind == "postcode":
        return lambda raw: None if normalise_generic_postcode(raw) else "no letters or digits"
    return lambda raw: None if normalise_generic(raw) else "no letters or digits"


def _attribute_reason(attr: AttributeSpec) -> Reason:
    if attr.kind == "count":

        def count_reason(raw: str) -> str | None:
            match = _WHOLE_NUMBER.match(raw)
            if match is None:
                return "not a whole number"
            if int(match[1]) > attr.max_value:
                return f"above the spec's maximum ({attr.max_value:,})"
            return None

        return count_reason
    allowed = {" ".join(v.casefold().replace("_", " ").replace("-", " ").split())
               for v in attr.values or ()}  # fmt: skip

    def category_reason(raw: str) -> str | None:
        key = " ".join(raw.strip().casefold().replace("_", " ").replace("-", " ").split())
        return None if key in allowed else "not in the spec's list of values"

    return category_reason


@dataclass
class _Column:
    name: str
    column: str
    kind: str
    reason: Reason
    is_date: bool = False
    formats: tuple[str, ...] | None = None
    expected: str = ""
    present: int = 0
    missing: int = 0
    invalid: int = 0
    swapped: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    rows: list[int] = field(default_factory=list)
    distinct: set[int] = field(default_factory=set)
    dates: Counter[str] = field(default_factory=Counter)

    def add(self, arr: pa.Array, first_row: int, reference: date) -> None:
        blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(arr), _EMPTY), True)
        arr = pc.if_else(blank, pa.scalar(None, pa.string()), arr)
        encoded = pc.dictionary_encode(arr)
        uniques: list[str | None] = encoded.dictionary.to_pylist()
        indices = encoded.indices
        nulls = indices.null_count
        self.missing += nulls
        self.present += len(indices) - nulls
        counts = Counter(indices.drop_null().to_pylist())
        bad_index: set[int] = set()
        for i, value in enumerate(uniques):
            if value is None:
                continue
            self.distinct.add(hash(value))
            if self.is_date:
                if len(self.dates) < _DATE_VALUES_CAP or value in self.dates:
                    self.dates[value] += counts[i]
                if read_date_cached(value, reference, self.formats)[1] == "swapped":
                    self.swapped += counts[i]
            why = self.reason(value)
            if why is not None:
                self.invalid += counts[i]
                self.reasons[why] += counts[i]
                bad_index.add(i)
        if bad_index and len(self.rows) < _EXAMPLES:
            for row, index in enumerate(indices.to_pylist()):
                if index in bad_index:
                    self.rows.append(first_row + row)
                    if len(self.rows) >= _EXAMPLES:
                        break

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "field": self.name,
            "column": self.column,
            "type": self.kind,
            "present": self.present,
            "missing": self.missing,
            "invalid": self.invalid,
            "invalid_share": round(self.invalid / self.present, 4) if self.present else 0.0,
            "invalid_reasons": dict(self.reasons.most_common()),
            "distinct_share": round(len(self.distinct) / self.present, 4) if self.present else 0.0,
            "example_rows": self.rows,
            "expected": self.expected,
        }
        if self.is_date:
            out["swapped"] = self.swapped
            out.update(date_formats_report(self.dates))
        return out


def _try(value: str, fmt: str) -> date | None:
    try:
        return datetime.strptime(value, fmt).date()
    except ValueError:
        return None


def date_formats_report(values: Mapping[str, int]) -> dict[str, Any]:
    """The formats a date column's values fit and how many are day/month ambiguous.

    ``values`` maps each distinct raw value to its count. Returns ``date_formats``
    (format -> share of values it reads, the ones reading at least 1%),
    ``ambiguous_day_month`` (share that reads as a different date day-first and
    month-first) and ``day_month_note`` (a sentence when the file cannot tell them apart
    or mixes them).
    """
    sample = dict(Counter(values).most_common(_FORMAT_SAMPLE))
    total = sum(sample.values())
    if not total:
        return {"date_formats": {}, "ambiguous_day_month": 0.0, "day_month_note": None}
    shares: dict[str, float] = {}
    for fmt in CANDIDATE_DATE_FORMATS:
        read = sum(n for v, n in sample.items() if _try(v.strip(), fmt) is not None)
        if read / total >= 0.01:
            shares[fmt] = round(read / total, 4)
    ambiguous = 0
    day_first = month_first = 0
    for value, n in sample.items():
        text = value.strip()
        for dmy, mdy in (
            ("%d/%m/%Y", "%m/%d/%Y"),
            ("%d-%m-%Y", "%m-%d-%Y"),
            ("%d/%m/%y", "%m/%d/%y"),
        ):
            a, b = _try(text, dmy), _try(text, mdy)
            if a is not None and b is not None and a != b:
                ambiguous += n
            elif a is not None and b is None:
                day_first += n
            elif b is not None and a is None:
                month_first += n
            if a is not None or b is not None:
                break
    note = None
    if ambiguous and not day_first and not month_first:
        note = ("no value has a day above 12, so nothing in the file tells day from month: "
                "declare the format in the spec")  # fmt: skip
    elif day_first and month_first:
        note = (f"mixed: {day_first:,} values only read day-first and {month_first:,} only "
                "month-first")  # fmt: skip
    elif month_first:
        note = 'the values read month-first (US style): declare "formats": ["%m/%d/%Y"]'
    return {
        "date_formats": dict(sorted(shares.items(), key=lambda kv: -kv[1])),
        "ambiguous_day_month": round(ambiguous / total, 4),
        "day_month_note": note,
    }


def check_file(
    spec: Spec,
    input_path: str | Path,
    *,
    column_map: Mapping[str, str] | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
    sheet: str | None = None,
    batch_rows: int = 65_536,
    on_progress: Callable[[int, int, int], None] | None = None,
) -> dict[str, Any]:
    """The quality report of ``input_path`` under ``spec`` (a JSON-ready dict).

    Raises :class:`linkage.errors.InputError` when the file cannot be read or lacks a
    column, as ``pprl hash`` would.
    """
    source = open_input(input_path, encoding=encoding, delimiter=delimiter, sheet=sheet)
    columns = resolve_columns(spec, source.header, str(source.path), column_map)
    reference = spec.reference_date
    checks: list[_Column] = []
    for ident in spec.identifiers:
        checks.append(_Column(ident.name, columns[ident.name], ident.type,
                              _identifier_reason(ident, reference), ident.type == "date",
                              ident.formats, expected_values(ident)))  # fmt: skip
    for attr in spec.attributes:
        if attr.kind in ("category", "count"):
            checks.append(_Column(attr.name, columns[attr.name], attr.kind,
                                  _attribute_reason(attr)))  # fmt: skip
    rows = blank = 0
    wanted = list(dict.fromkeys(columns.values()))
    for batch in source.batches(wanted, batch_rows):
        table = batch.table
        empty = None
        for check in checks:
            arr = table.column(check.column).combine_chunks()
            check.add(arr, batch.first_row, reference)
            is_blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(arr), _EMPTY), True)
            empty = is_blank if empty is None else pc.and_(empty, is_blank)
        if empty is not None:
            blank += pc.sum(pc.cast(empty, pa.int64())).as_py() or 0
        rows += table.num_rows
        if on_progress is not None:
            on_progress(rows, batch.bytes_done, source.total_bytes)
    return {
        "file": str(source.path),
        "read": source.describe(),
        "rows": rows,
        "blank_rows": blank,
        "columns": [c.report() for c in checks],
    }
