"""NHS numbers: ten digits whose last is a modulus-11 check digit."""

from __future__ import annotations

import operator
import re
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["nhs_check_digit_ok", "normalise_nhs_number", "normalise_nhs_numbers"]

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


_WEIGHT_VECTOR = np.array(_WEIGHTS, dtype=np.int64)
# Python's \s (every Unicode space, e.g. Excel's non-breaking space) spelled for RE2
_RE2_SEPARATORS = r"[\t\n\x0b\x0c\r\x1c-\x1f\x85\pZ\-./]"


def normalise_nhs_numbers(values: Sequence[str | None]) -> list[str | None]:
    """:func:`normalise_nhs_number` of many values at once (Arrow and numpy kernels).

    NHS numbers are nearly all distinct, so this is the encoder's hot path: the modulus-11
    check runs as one matrix product instead of a Python loop per value.
    """
    arr = pa.array(values, pa.string())
    compact = pc.replace_substring_regex(arr, _RE2_SEPARATORS, "")
    shaped = pc.fill_null(pc.match_substring_regex(compact, r"^[0-9]{10}$"), False)
    filler = pa.scalar("0000000000", pa.string())
    fixed = pc.if_else(shaped, compact, filler).cast(pa.binary(10))
    raw = np.frombuffer(
        fixed.buffers()[1], dtype=np.uint8, count=10 * len(fixed), offset=fixed.offset * 10
    )
    digits = raw.reshape(-1, 10).astype(np.int64) - 48
    check = (11 - (digits[:, :9] @ _WEIGHT_VECTOR) % 11) % 11
    ok = (
        shaped.to_numpy(zero_copy_only=False)
        & (check != 10)
        & (check == digits[:, 9])
        & (digits.min(axis=1) != digits.max(axis=1))  # 0000000000 passes mod 11: a placeholder
    )
    cleaned = compact.to_pylist()
    return [c if good else None for c, good in zip(cleaned, ok.tolist(), strict=True)]
