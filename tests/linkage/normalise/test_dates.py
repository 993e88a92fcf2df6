"""Date parsing: the accepted formats, the two-digit-year pivot, impossible and future dates."""

from datetime import date

import pytest

from linkage.normalise.dates import date_variants, normalise_date, parse_date

REF = date(2026, 4, 1)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1984-02-29", "1984-02-29"),
        ("1984-2-9", "1984-02-09"),
        ("1984-02-29T00:00:00", "1984-02-29"),
        ("29/02/1984", "1984-02-29"),
        ("9/2/1984", "1984-02-09"),
        ("29.02.1984", "1984-02-29"),
        ("19840229", "1984-02-29"),
        ("01-03-84", "1984-03-01"),
        ("01-03-05", "2005-03-01"),
        ("01-03-26", "2026-03-01"),  # before the reference date: 2026
        ("01-05-26", "1926-05-01"),  # after it: pivots back a century
        (" 29/02/1984 ", "1984-02-29"),
    ],
)
def test_accepted_formats(raw: str, expected: str) -> None:
    assert normalise_date(raw, REF) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "31/02/1990",
        "1983-02-29",
        "2027-01-01",
        "02/04/2026",
        "1899-12-31",
        "13/13/1990",
        "00/01/1990",
        "yesterday",
        "1990",
        "",
        "   ",
        "19903131",  # neither way round
    ],
)
def test_impossible_future_or_garbage_dates_are_missing(raw: str) -> None:
    assert parse_date(raw, REF) is None


def test_reference_date_itself_is_allowed() -> None:
    assert normalise_date("01/04/2026", REF) == "2026-04-01"


def test_variants() -> None:
    v = date_variants(date(1984, 3, 7))
    assert v == {
        "full": "1984-03-07",
        "swapped": "1984-07-03",
        "year": "1984",
        "month_day": "03-07",
        "year_month": "1984-03",
    }


def test_swapped_is_missing_when_it_cannot_be_a_date_or_is_the_same() -> None:
    assert date_variants(date(1984, 3, 17))["swapped"] is None
    assert date_variants(date(1984, 5, 5))["swapped"] is None


def test_swapped_of_one_equals_full_of_the_other() -> None:
    a, b = date(1984, 3, 7), date(1984, 7, 3)
    assert date_variants(a)["swapped"] == date_variants(b)["full"]
