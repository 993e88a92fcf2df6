"""Normalisation of identifier values, per identifier type, before hashing.

Each normaliser takes one raw string and returns the canonical form or ``None`` when the
value is missing or invalid (an invalid NHS number, an impossible date, a malformed UK
postcode). Normalisers are idempotent: ``f(f(x)) == f(x)``. They are pure functions on
single values; the encoder calls them once per *distinct* value in a batch.
"""

from linkage.normalise.dates import date_variants, normalise_date, parse_date
from linkage.normalise.generic import normalise_generic, normalise_generic_postcode
from linkage.normalise.names import (
    name_parts,
    name_variants,
    nickname_root,
    normalise_name,
)
from linkage.normalise.nhs import nhs_check_digit_ok, normalise_nhs_number
from linkage.normalise.postcodes import normalise_uk_postcode, uk_postcode_variants
from linkage.normalise.sex import normalise_sex

__all__ = [
    "date_variants",
    "name_parts",
    "name_variants",
    "nhs_check_digit_ok",
    "nickname_root",
    "normalise_date",
    "normalise_generic",
    "normalise_generic_postcode",
    "normalise_name",
    "normalise_nhs_number",
    "normalise_sex",
    "normalise_uk_postcode",
    "parse_date",
    "uk_postcode_variants",
]
