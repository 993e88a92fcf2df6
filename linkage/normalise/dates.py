"""Dates of birth: ISO, dd/mm/yyyy, dd-mm-yy (with a pivot), yyyymmdd.

Impossible dates (31/02), dates before 1900 and dates after the spec's reference date
are rejected (``None``). The canonical form is ISO ``yyyy-mm-dd``.
"""

from __future__ import annotations

import re
from datetime import date
from functools import lru_cache

__all__ = [
    "date_variants",
    "date_variants_cached",
    "normalise_date",
    "parse_date",
    "parse_date_cached",
]

_ISO = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ].*)?$")
_COMPACT = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_DMY = re.compile(r"^(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4}|\d{2})(?: .*)?$")
EARLIEST = date(1900, 1, 1)


def _make(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def parse_date(raw: str | None, reference: date) -> date | None:
    """Parse a date in one of the accepted formats; ``None`` if missing or impossible.

    Two-digit years pivot on the reference date: ``yy`` is 20yy unless that would be after
    the reference date, then 19yy (dates of birth are never in the future).
    """
    if raw is None:
        return None
    text = raw.strip()
    if not text:
        return None
    parsed: date | None = None
    if (m := _ISO.match(text)) or (m := _COMPACT.match(text)):
        parsed = _make(int(m[1]), int(m[2]), int(m[3]))
    elif m := _DMY.match(text):
        day, month, year_text = int(m[1]), int(m[2]), m[3]
        if len(year_text) == 2:
            year = 2000 + int(year_text)
            candidate = _make(year, month, day)
            if candidate is None or candidate > reference:
                year -= 100
            parsed = _make(year, month, day)
        else:
            parsed = _make(int(year_text), month, day)
    if parsed is None or parsed < EARLIEST or parsed > reference:
        return None
    return parsed


def normalise_date(raw: str | None, reference: date) -> str | None:
    """ISO ``yyyy-mm-dd`` of a valid date, else ``None``."""
    parsed = parse_date(raw, reference)
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
parse_date_cached = lru_cache(maxsize=1 << 17)(parse_date)
date_variants_cached = lru_cache(maxsize=1 << 16)(date_variants)
