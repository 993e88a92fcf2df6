"""Generic strings, ids and non-UK postcodes: case, space and punctuation folded."""

from __future__ import annotations

import re
import unicodedata

__all__ = ["normalise_generic", "normalise_generic_postcode"]

_NOT_ALNUM = re.compile(r"[^0-9A-Z]+")


def normalise_generic(raw: str | None) -> str | None:
    """Upper case ASCII letters and digits, one space between words; ``None`` if empty."""
    if raw is None:
        return None
    folded = unicodedata.normalize("NFKD", raw.upper())
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch))
    text = " ".join(_NOT_ALNUM.sub(" ", folded).split())
    return text or None


def normalise_generic_postcode(raw: str | None) -> str | None:
    """A non-UK postal code (e.g. a US ZIP or Australian postcode): alphanumerics only."""
    text = normalise_generic(raw)
    return text.replace(" ", "") if text else None
