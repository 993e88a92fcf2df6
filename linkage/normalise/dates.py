"""Dates of birth: the spec's declared formats, or ISO, dd/mm/yyyy, dd-mm-yy, yyyymmdd;
plus Excel serial numbers and month names (``15-Jan-1970``, ``January 15, 1970``).

A value that is impossible as written but valid with day and month swapped
(``19221607`` under ``yyyymmdd``, ``25/12/1970`` under ``mm/dd/yyyy``) is read as the
swap and flagged ``swapped``, so a typo costs no link; a column where many values need
the swap is a wrong format, which the callers report instead of hashing.

Impossible dates (31/02), dates before 1900 and dates after the spec's reference date
are rejected (``None``). The canonical form is ISO ``yyyy-mm-dd``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Literal

__all__ = [
    "DateStatus",
    "date_variants",
    "date_variants_cached",
    "normalise_date",
    "parse_date",
    "parse_date_cached",
    "read_date",
    "read_date_cached",
]

#: ``ok``; ``swapped`` (valid only with day and month swapped, read as the swap);
#: ``missing`` (blank); ``invalid`` (not a date in the accepted formats);
#: ``out_of_range`` (before 1900 or after the reference date).
DateStatus = Literal["ok", "swapped", "missing", "invalid", "out_of_range"]

_ISO = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_COMPACT = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_DMY = re.compile(r"^(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4}|\d{2})$")
# a time of day after the date, as Excel and databases write it ("1970-01-15 00:00:00")
_TIME = re.compile(
    r"(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?: ?[AaPp][Mm])?(?:Z|[+-]\d{2}:?\d{2})?)$"
)
# Excel serial day numbers: five digits is 1927-05-18 .. 2173; a bare four-digit number
# is far more likely a year than a date in 1900-1927, so it is not read as a serial.
_SERIAL = re.compile(r"^(\d{5})(?:\.0*)?$")
_EXCEL_EPOCH = date(1899, 12, 30)  # Excel's day 0, after its 1900 leap-year bug
_DAY_NAME_YEAR = re.compile(
    r"^(\d{1,2})(?:st|nd|rd|th)?[\s\-/.]*([A-Za-z]{3,9})\.?[\s\-/.,]*(\d{4}|\d{2})$"
)
_NAME_DAY_YEAR = re.compile(
    r"^([A-Za-z]{3,9})\.?[\s\-/.]*(\d{1,2})(?:st|nd|rd|th)?,?[\s\-/.]*(\d{4})$"
)
_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ),
        start=1,
    )
    for name in names
}
EARLIEST = date(1900, 1, 1)


def _make(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _pivot(year_text: str, month: int, day: int, reference: date) -> int:
    """A two-digit year: 20yy unless that is after the reference date, then 19yy."""
    year = 2000 + int(year_text)
    candidate = _make(year, month, day)
    if candidate is None or candidate > reference:
        year -= 100
    return year


def _ymd_or_swap(year: int, month: int, day: int) -> tuple[date | None, bool]:
    parsed = _make(year, month, day)
    if parsed is not None:
        return parsed, False
    swapped = _make(year, day, month)
    return swapped, swapped is not None


def _month_name(text: str, reference: date) -> date | None:
    if m := _DAY_NAME_YEAR.match(text):
        day_text, month_text, year_text = m[1], m[2], m[3]
    elif m := _NAME_DAY_YEAR.match(text):
        month_text, day_text, year_text = m[1], m[2], m[3]
    else:
        return None
    month = _MONTHS.get(month_text.lower())
    if month is None:
        return None
    day = int(day_text)
    year = _pivot(year_text, month, day, reference) if len(year_text) == 2 else int(year_text)
    return _make(year, month, day)


def _declared(text: str, formats: Sequence[str], reference: date) -> tuple[date | None, bool]:
    """The first declared format that reads ``text``; else one that reads it swapped."""
    for swap in (False, True):
        for fmt in formats:
            if swap:
                if "%d" not in fmt or "%m" not in fmt:
                    continue
                fmt = fmt.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m")
            try:
                parsed = datetime.strptime(text, fmt).date()
            except ValueError:
                continue
            if "%y" in fmt:
                year = _pivot(f"{parsed.year % 100:02d}", parsed.month, parsed.day, reference)
                parsed = _make(year, parsed.month, parsed.day) or parsed
            return parsed, swap
    return None, False


def _default(text: str, reference: date) -> tuple[date | None, bool]:
    if (m := _ISO.match(text)) or (m := _COMPACT.match(text)):
        return _ymd_or_swap(int(m[1]), int(m[2]), int(m[3]))
    if m := _DMY.match(text):
        day, month, year_text = int(m[1]), int(m[2]), m[3]
        if len(year_text) == 2:
            parsed = _make(_pivot(year_text, month, day, reference), month, day)
            if parsed is not None:
                return parsed, False
            swapped = _make(_pivot(year_text, day, month, reference), day, month)
            return swapped, swapped is not None
        return _ymd_or_swap(int(year_text), month, day)
    return None, False


def read_date(
    raw: str | None, reference: date, formats: Sequence[str] | None = None
) -> tuple[date | None, DateStatus]:
    """Parse one date and say how: ``(date or None, status)`` (see :data:`DateStatus`).

    ``formats`` are ``strptime`` formats declared in the spec (e.g. ``("%m/%d/%Y",)``);
    without them the UK defaults apply (ISO, ``dd/mm/yyyy``, ``dd-mm-yy``, ``yyyymmdd``).
    Either way ISO dates, Excel serials and month names are read too: none of them is
    ambiguous. Two-digit years pivot on the reference date (dates of birth are never in
    the future).
    """
    if raw is None:
        return None, "missing"
    text = raw.strip()
    if not text:
        return None, "missing"
    text = _TIME.sub("", text) or text
    swapped = False
    parsed: date | None = None
    if formats:
        parsed, swapped = _declared(text, formats, reference)
        if parsed is None and (m := _ISO.match(text)):
            parsed = _make(int(m[1]), int(m[2]), int(m[3]))
    else:
        parsed, swapped = _default(text, reference)
    if parsed is None:
        if m := _SERIAL.match(text):
            parsed = _EXCEL_EPOCH + timedelta(days=int(m[1]))
        else:
            parsed = _month_name(text, reference)
    if parsed is None:
        return None, "invalid"
    if parsed < EARLIEST or parsed > reference:
        return None, "out_of_range"
    return parsed, "swapped" if swapped else "ok"


def parse_date(
    raw: str | None, reference: date, formats: Sequence[str] | None = None
) -> date | None:
    """Parse a date in one of the accepted formats; ``None`` if missing or impossible."""
    return read_date(raw, reference, formats)[0]


def normalise_date(
    raw: str | None, reference: date, formats: Sequence[str] | None = None
) -> str | None:
    """ISO ``yyyy-mm-dd`` of a valid date, else ``None``."""
    parsed = parse_date(raw, reference, formats)
    return parsed.isoformat() if parsed else None


def date_variants(value: date | None) -> dict[str, str | None]:
    """Derived variants of a date: full, day/month swapped, year, month+day, year+month."""
    if value is None:
        return dict.fromkeys(("full", "swapped", "year", "month_day", "year_month"))
    swapped = _make(value.year, value.day, value.month) if value.day <= 12 else None
    return {
        "full": value.isoformat(),
        # the swapped date, hashed as a *full* date so that l.full = r.swapped can match
        "swapped": swapped.isoformat() if swapped and swapped != value else None,
        "year": f"{value.year:04d}",
        "month_day": f"{value.month:02d}-{value.day:02d}",
        "year_month": f"{value.year:04d}-{value.month:02d}",
    }


# Dates of birth come from a bounded domain (about 40,000 days), so memoising the parse
# across batches turns most of a large extract's date work into dictionary lookups.
# (``formats`` must be a tuple here: the cache keys on it.)
read_date_cached = lru_cache(maxsize=1 << 17)(read_date)
parse_date_cached = lru_cache(maxsize=1 << 17)(parse_date)
date_variants_cached = lru_cache(maxsize=1 << 16)(date_variants)
