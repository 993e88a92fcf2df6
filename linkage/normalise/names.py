"""Forenames and surnames: accents folded, case, leading titles dropped, punctuation collapsed.

``O'Brien`` -> ``OBRIEN``; ``Smith-Jones`` -> ``SMITH JONES`` with parts ``SMITH`` and
``JONES``; ``Dr. Zoë  Müller`` -> ``ZOE MULLER``. Apostrophes vanish (they join the
name), every other run of non-letters becomes one space. A title is dropped only while
another word remains: ``Mr Lord`` -> ``LORD``, ``Lord`` -> ``LORD``.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from functools import cache
from importlib import resources

import jellyfish

__all__ = ["name_parts", "name_variants", "nickname_root", "normalise_name"]

TITLES = frozenset(
    [
        "MR",
        "MRS",
        "MS",
        "MISS",
        "MX",
        "DR",
        "PROF",
        "REV",
        "REVD",
        "SIR",
        "DAME",
        "LORD",
        "LADY",
        "FR",
        "SR",
        "MASTER",
        "CAPT",
    ]
)
# Letters that NFKD does not decompose into ASCII.
_SPECIAL = str.maketrans(
    {
        "ß": "SS",
        "Æ": "AE",
        "æ": "AE",
        "Ø": "O",
        "ø": "O",
        "Ł": "L",
        "ł": "L",
        "Đ": "D",
        "đ": "D",
        "Þ": "TH",
        "þ": "TH",
        "Œ": "OE",
        "œ": "OE",
        "ı": "I",
    }
)
_APOSTROPHES = re.compile(r"['’‘`´]")
_NON_LETTERS = re.compile(r"[^A-Z]+")


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.translate(_SPECIAL))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def normalise_name(raw: str | None) -> str | None:
    """Canonical name: ASCII upper case, single spaces between parts, no leading titles."""
    if raw is None:
        return None
    text = _APOSTROPHES.sub("", _fold(raw).upper())
    words = _NON_LETTERS.sub(" ", text).split()
    # Titles lead ("Dr Zoe Muller"); one that is the last word left is the name itself
    # (surname Lord, forename Miss): dropping it would lose a real person's name.
    start = 0
    while start < len(words) - 1 and words[start] in TITLES:
        start += 1
    return " ".join(words[start:]) or None


def name_parts(name: str) -> tuple[str, str | None]:
    """First and second part of a normalised name (hyphenated or double-barrelled).

    A one-part name gives ``(name, None)``; three or more parts give the first and the
    last, which are the ones most often kept when a name is shortened.
    """
    parts = name.split(" ")
    if len(parts) == 1:
        return name, None
    return parts[0], parts[-1]


@cache
def _nicknames() -> dict[str, str]:
    table: dict[str, str] = {}
    text = resources.files("linkage.normalise").joinpath("nicknames.csv").read_text("utf-8")
    for row in csv.reader(text.splitlines()):
        if not row or row[0].startswith("#"):
            continue
        root, *forms = (cell.strip().upper() for cell in row)
        for form in forms:
            table.setdefault(form, root)
    return table


def nickname_root(name: str) -> str:
    """The canonical forename for a nickname (BOB -> ROBERT); the name itself otherwise."""
    first = name.split(" ")[0]
    return _nicknames().get(first, first)


def name_variants(name: str | None) -> dict[str, str | None]:
    """Every derived variant of a normalised name (see ``linkage.spec.VARIANTS_BY_TYPE``)."""
    if not name:
        return dict.fromkeys(
            ("exact", "nickname", "phonetic", "prefix3", "initial", "part1", "part2")
        )
    compact = name.replace(" ", "")
    part1, part2 = name_parts(name)
    return {
        "exact": compact,
        "nickname": nickname_root(name),
        "phonetic": jellyfish.soundex(compact),
        "prefix3": compact[:3],
        "initial": compact[0],
        "part1": part1,
        "part2": part2,
    }
