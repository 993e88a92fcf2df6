"""NHS numbers: ten digits whose last is a modulus-11 check digit."""

from __future__ import annotations

import operator
import re

__all__ = ["nhs_check_digit_ok", "normalise_nhs_number"]

_SEPARATORS = re.compile(r"[\s\-./]")
_WEIGHTS = (10, 9, 8, 7, 6, 5, 4, 3, 2)


def nhs_check_digit_ok(digits: str) -> bool:
    """Whether a 10-digit string passes the NHS modulus-11 check."""
    if len(digits) != 10 or not digits.isascii() or not digits.isdigit():
        return False
    # bytes iterate as ints: ord(d) - 48 is the digit; 48 * sum(weights) = 2592
    raw = digits.encode()
    total: int = sum(map(operator.mul, raw, _WEIGHTS)) - 2592
    check = (11 - total % 11) % 11
    return check != 10 and check == raw[9] - 48


def normalise_nhs_number(raw: str | None) -> str | None:
    """Ten digits with separators removed, or ``None`` if missing or failing the check."""
    if raw is None:
        return None
    digits = _SEPARATORS.sub("", raw)
    if not nhs_check_digit_ok(digits):
        return None
    # All-same-digit numbers such as 0000000000 pass mod 11 but are placeholders.
    if len(set(digits)) == 1:
        return None
    return digits
