"""Sex / gender codes to M, F or X; unknown and not-stated become missing."""

from __future__ import annotations

__all__ = ["normalise_sex"]

_CODES = {
    "M": "M",
    "MALE": "M",
    "MAN": "M",
    "1": "M",
    "BOY": "M",
    "F": "F",
    "FEMALE": "F",
    "WOMAN": "F",
    "2": "F",
    "GIRL": "F",
    "W": "F",
    "X": "X",
    "I": "X",
    "INDETERMINATE": "X",
    "9": None,
    "0": None,
    "U": None,
    "UNKNOWN": None,
    "NOT KNOWN": None,
    "NOT STATED": None,
    "N": None,
}


def normalise_sex(raw: str | None) -> str | None:
    """``M``, ``F`` or ``X`` (indeterminate), or ``None`` for missing/unknown codes."""
    if raw is None:
        return None
    key = " ".join(raw.strip().upper().replace(".", "").split())
    if key in ("M", "F", "X"):
        return key
    return _CODES.get(key)
