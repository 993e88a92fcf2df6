"""Properties of the date parser over whole classes of inputs: every declared format reads
back the date it wrote, a day-month swap is read as the swap and flagged, Excel serials
and month names read back, and no text makes it raise."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from linkage.normalise.dates import normalise_date, read_date

REF = date(2026, 4, 1)
DATES = st.dates(min_value=date(1900, 1, 1), max_value=REF)
NUMERIC_FORMATS = st.sampled_from(
    ["%d/%m/%Y", "%m/%d/%Y", "%Y-%m-%d", "%Y%m%d", "%d-%m-%Y", "%m-%d-%Y", "%d.%m.%Y",
     "%Y/%m/%d", "%m/%d/%y", "%d/%m/%y"]
)  # fmt: skip
NAMED_FORMATS = st.sampled_from(["%d-%b-%Y", "%d %B %Y", "%b %d, %Y", "%d-%b-%y"])


def _swap(fmt: str) -> str:
    return fmt.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m")


def _century_ok(fmt: str, d: date, got: date) -> bool:
    """Two-digit years pivot on the reference date: 20yy unless in the future."""
    if "%y" not in fmt:
        return got == d
    century_ago = REF.replace(year=REF.year - 100)
    same = (got.month, got.day, got.year % 100) == (d.month, d.day, d.year % 100)
    return same and century_ago < got <= REF


@given(DATES, NUMERIC_FORMATS | NAMED_FORMATS)
def test_a_declared_format_reads_back_what_it_wrote(d: date, fmt: str) -> None:
    got, status = read_date(d.strftime(fmt), REF, (fmt,))
    assert got is not None and status == "ok"
    assert _century_ok(fmt, d, got)


@given(DATES.filter(lambda d: d.day > 12), NUMERIC_FORMATS)
def test_day_and_month_swapped_is_read_as_the_swap_and_flagged(d: date, fmt: str) -> None:
    written = d.strftime(_swap(fmt))  # the month position holds a day above 12: impossible
    got, status = read_date(written, REF, (fmt,))
    assert status == "swapped" and got is not None and _century_ok(fmt, d, got)


@given(DATES.filter(lambda d: d.day > 12))
def test_default_formats_read_uk_dates_and_flag_us_ones(d: date) -> None:
    assert read_date(d.strftime("%d/%m/%Y"), REF) == (d, "ok")
    assert read_date(d.isoformat(), REF) == (d, "ok")
    assert read_date(d.strftime("%Y%m%d"), REF) == (d, "ok")
    assert read_date(d.strftime("%m/%d/%Y"), REF) == (d, "swapped")


@given(st.dates(min_value=date(1927, 5, 18), max_value=REF), st.sampled_from(["", ".0", ".00"]))
def test_excel_serials_read_back(d: date, suffix: str) -> None:
    serial = (d - date(1899, 12, 30)).days
    for formats in (None, ("%m/%d/%Y",)):
        assert read_date(f"{serial}{suffix}", REF, formats) == (d, "ok")


@given(DATES, st.sampled_from(["%d-%b-%Y", "%d %B %Y", "%B %d, %Y", "%d-%b-%y", "%b %d %Y"]))
def test_month_names_need_no_declaration(d: date, fmt: str) -> None:
    got, status = read_date(d.strftime(fmt), REF)
    assert status == "ok" and got is not None and _century_ok(fmt, d, got)


@given(DATES, st.sampled_from([" 00:00:00", "T00:00:00", " 00:00", " 12:00:00 AM"]))
def test_a_time_after_the_date_is_ignored(d: date, time: str) -> None:
    assert read_date(d.isoformat() + time, REF) == (d, "ok")
    assert read_date(d.strftime("%d/%m/%Y") + time, REF) == (d, "ok")


@given(st.dates(min_value=REF + timedelta(days=1), max_value=date(2100, 1, 1)), NUMERIC_FORMATS)
def test_dates_after_the_reference_date_are_refused(d: date, fmt: str) -> None:
    if "%y" in fmt:
        return  # a two-digit year pivots into the past instead
    assert read_date(d.strftime(fmt), REF, (fmt,)) == (None, "out_of_range")


@given(st.text(max_size=30), st.none() | st.tuples(NUMERIC_FORMATS))
def test_any_text_parses_or_is_refused_and_normalising_is_idempotent(
    text: str, formats: tuple[str, ...] | None
) -> None:
    got, status = read_date(text, REF, formats)
    assert (got is None) == (status in ("missing", "invalid", "out_of_range"))
    once = normalise_date(text, REF, formats)
    assert normalise_date(once, REF, formats) == once
