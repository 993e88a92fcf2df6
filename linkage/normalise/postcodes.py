"""UK postcodes: ``sw1a1aa`` -> ``SW1A 1AA``, validated by the official pattern.

Derived: sector ``SW1A 1`` and district (outward code) ``SW1A``.
"""

from __future__ import annotations

import re

__all__ = ["normalise_uk_postcode", "uk_postcode_variants"]

# The pattern published with the UK Government Data Standards (BS 7666), plus GIR 0AA.
_UK = re.compile(
    r"^(GIR0AA|"
    r"(?:[A-PR-UWYZ][0-9][0-9]?|[A-PR-UWYZ][A-HK-Y][0-9][0-9]?|"
    r"[A-PR-UWYZ][0-9][A-HJKPSTUW]|[A-PR-UWYZ][A-HK-Y][0-9][ABEHMNPRVWXY])"
    r"[0-9][ABD-HJLNP-UW-Z]{2})$"
)
_NOT_ALNUM = re.compile(r"[^A-Z0-9]")


def normalise_uk_postcode(raw: str | None) -> str | None:
    """``OUTWARD INWARD`` in upper case, or ``None`` if it is not a valid UK postcode."""
    if raw is None:
        return None
    compact = _NOT_ALNUM.sub("", raw.upper())
    if not 5 <= len(compact) <= 7 or not _UK.match(compact):
        return None
    return f"{compact[:-3]} {compact[-3:]}"


def uk_postcode_variants(postcode: str | None) -> dict[str, str | None]:
    """Full postcode, sector and district of a normalised UK postcode."""
    if postcode is None:
        return {"full": None, "sector": None, "district": None}
    outward, inward = postcode.split(" ")
    return {"full": postcode, "sector": f"{outward} {inward[0]}", "district": outward}
