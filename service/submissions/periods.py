"""Periods: the clear label of the time an extract covers (e.g. ``2026-Q1``).

A project names its periods by a scheme (``quarterly``, ``monthly``, ``yearly``) or, with
none, accepts any short label. No period (``None``) is the project's one default period,
which every submission and run made before periods existed belongs to. Labels are
checked here, once, for the submissions API, the runs API and the analyst's pages.
"""

from __future__ import annotations

import re

__all__ = ["DEFAULT_LABEL", "SCHEMES", "PeriodError", "check_period", "label", "period_key"]

#: how the default period is shown
DEFAULT_LABEL = "all submissions"

SCHEMES: dict[str, tuple[re.Pattern[str], str]] = {
    "quarterly": (re.compile(r"^[0-9]{4}-Q[1-4]$"), "a year and quarter such as 2026-Q1"),
    "monthly": (re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$"), "a year and month such as 2026-03"),
    "yearly": (re.compile(r"^[0-9]{4}$"), "a year such as 2026"),
}
_ANY = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,19}$")


class PeriodError(ValueError):
    """A period label the project does not accept; the message is one sentence."""


def check_period(value: str | None, scheme: str | None) -> str | None:
    """The period label to store (None = the default period), or :class:`PeriodError`."""
    if value is None or value == "":
        return None
    if scheme in SCHEMES:
        pattern, words = SCHEMES[scheme]
        if not pattern.fullmatch(value):  # not match: "$" also matches before a final newline
            raise PeriodError(
                f"period {value[:40]!r} is not {words}: this project's periods are {scheme}"
            )
        return value
    if not _ANY.fullmatch(value):
        raise PeriodError(
            f"period {value[:40]!r} is not a label of up to 20 letters, digits, '.', '_' or '-'"
        )
    return value


def label(period: str | None) -> str:
    """A period as shown to people."""
    return period if period else DEFAULT_LABEL


def period_key(period: str | None) -> tuple[int, str]:
    """Sort key: the default period first, then labels in order (2026-Q1 < 2026-Q2)."""
    return (0, "") if not period else (1, period)
