"""What a valid value of each identifier type looks like, in words for error messages."""

from __future__ import annotations

from linkage.spec import IdentifierSpec

DEFAULT_MAX_INVALID = 0.2  # an identifier column more invalid than this is refused

__all__ = ["DEFAULT_MAX_INVALID", "UK_DATE_FORMATS", "expected_values"]

#: what a date column is read as when the spec declares no formats, in strptime terms
UK_DATE_FORMATS = ("%Y-%m-%d", "%d/%m/%Y", "%d-%m-%y", "%Y%m%d")

_EXPECTED = {
    "nhs_number": "10-digit NHS numbers passing the modulus-11 check",
    "forename": "names with at least one letter",
    "surname": "names with at least one letter",
    "sex": "sex codes (M, F, X, male, female, 1, 2)",
    "uk_postcode": "UK postcodes such as SW1A 1AA",
    "string": "text with at least one letter or digit",
    "id": "identifiers with at least one letter or digit",
    "postcode": "postal codes with at least one letter or digit",
}


def expected_values(ident: IdentifierSpec) -> str:
    """A phrase naming what ``ident`` accepts, e.g. ``dates as %m/%d/%Y``."""
    if ident.type == "date":
        formats = ident.formats or UK_DATE_FORMATS
        return (
            f"dates as {' or '.join(formats)} (or Excel serials, 15-Jan-1970) between 1900 "
            "and the spec's reference date"
        )
    return _EXPECTED[ident.type]
