"""UK postcodes, NHS numbers, sex codes and generic strings."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linkage.normalise.generic import normalise_generic, normalise_generic_postcode
from linkage.normalise.nhs import nhs_check_digit_ok, normalise_nhs_number
from linkage.normalise.postcodes import (
    normalise_uk_postcode,
    uk_postcode_variants,
    uk_postcode_variants_bulk,
)
from linkage.normalise.sex import normalise_sex


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("sw1a1aa", "SW1A 1AA"),
        ("SW1A 1AA", "SW1A 1AA"),
        (" sw1a  1aa ", "SW1A 1AA"),
        ("M1 1AE", "M1 1AE"),
        ("m11ae", "M1 1AE"),
        ("B33 8TH", "B33 8TH"),
        ("CR2 6XH", "CR2 6XH"),
        ("DN55 1PT", "DN55 1PT"),
        ("EC1A-1BB", "EC1A 1BB"),
        ("W1A 0AX", "W1A 0AX"),
        ("GIR 0AA", "GIR 0AA"),
        ("QQ1 1AA", None),  # Q cannot start a postcode
        ("SW1A 1AC", None),  # C is not used in the inward code
        ("12345", None),
        ("NOT A POSTCODE", None),
        ("", None),
        (None, None),
    ],
)
def test_uk_postcodes(raw: str | None, expected: str | None) -> None:
    assert normalise_uk_postcode(raw) == expected


def test_postcode_sector_and_district() -> None:
    assert uk_postcode_variants("SW1A 1AA") == {
        "full": "SW1A 1AA",
        "sector": "SW1A 1",
        "district": "SW1A",
    }
    assert uk_postcode_variants(None) == {"full": None, "sector": None, "district": None}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("9434765919", "9434765919"),
        ("943 476 5919", "9434765919"),
        ("943-476-5919", "9434765919"),
        ("9434765918", None),  # wrong check digit
        ("943476591", None),  # nine digits
        ("94347659190", None),  # eleven digits
        ("0000000000", None),  # placeholder
        ("943476591X", None),
        ("", None),
        (None, None),
    ],
)
def test_nhs_numbers(raw: str | None, expected: str | None) -> None:
    assert normalise_nhs_number(raw) == expected


def test_check_digit_ten_is_never_valid() -> None:
    # 1000000010: weights give a check digit of 10, which no NHS number may have
    digits = "100000001"
    total = sum(int(d) * w for d, w in zip(digits, range(10, 1, -1), strict=True))
    assert 11 - total % 11 == 10
    assert not any(nhs_check_digit_ok(digits + str(c)) for c in range(10))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("M", "M"),
        ("m", "M"),
        ("Male", "M"),
        ("1", "M"),
        ("F", "F"),
        ("female", "F"),
        ("2", "F"),
        ("X", "X"),
        ("Indeterminate", "X"),
        ("U", None),
        ("Unknown", None),
        ("9", None),
        ("not stated", None),
        ("", None),
        ("banana", None),
        (None, None),
    ],
)
def test_sex_codes(raw: str | None, expected: str | None) -> None:
    assert normalise_sex(raw) == expected


def test_generic_strings_and_postcodes() -> None:
    assert normalise_generic("  Ab-c.  d ") == "AB C D"
    assert normalise_generic("ÉCOLE") == "ECOLE"
    assert normalise_generic(" -- ") is None
    assert normalise_generic_postcode("90210-1234") == "902101234"
    assert normalise_generic_postcode("k1a 0b1") == "K1A0B1"


postcode_like = st.from_regex(r"\A[A-Za-z]{1,2}[0-9][0-9A-Za-z]? ?[0-9][A-Za-z]{2}\Z") | st.text(
    max_size=12
)


@settings(max_examples=300)
@given(st.lists(postcode_like | st.none(), max_size=30))
def test_bulk_postcode_variants_equal_the_scalar_ones(values: list[str | None]) -> None:
    full, sector, district = uk_postcode_variants_bulk(values)
    for i, raw in enumerate(values):
        expected = uk_postcode_variants(normalise_uk_postcode(raw))
        assert (full[i], sector[i], district[i]) == (
            expected["full"],
            expected["sector"],
            expected["district"],
        ), raw
