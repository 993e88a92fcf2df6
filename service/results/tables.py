"""Released figures as tables a reader can follow: overlaps, breakdowns, statuses, notes.

Works only on the released JSON (figures already disclosure-controlled). Each cell keeps
its figure name and a status: ``released``, ``released-held`` (kept at the value of an
earlier release by the stability rule), ``suppressed-primary`` (too small or rests on
too few people), ``suppressed-secondary`` (hidden so that a primary cell cannot be
worked out by subtraction) or plain ``suppressed`` where the release does not say why.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from linkage.figure_names import cross_name

__all__ = [
    "SUPPRESSED",
    "Cell",
    "Table",
    "breakdown_values",
    "cross_pairs",
    "cross_tables",
    "footnotes",
    "natural_key",
    "overlap_rows",
    "policy_in_words",
    "result_tables",
    "show",
    "status_of",
    "tidy_rows",
]

SUPPRESSED = "*"
STATUSES = (
    "released",
    "released-held",
    "suppressed-primary",
    "suppressed-secondary",
    "suppressed",
)
_MARKS = {
    "suppressed-primary": "[p]",
    "suppressed-secondary": "[s]",
    "suppressed": "",
    "released-held": "[h]",
}
COHORTS = {
    "persons": "Everyone",
    "multi": "Known to 2 or more partners",
    "frequent": "Frequent users",
}


def show(value: Any) -> str:
    """A released value as printed (``*`` = suppressed)."""
    if value is None:
        return SUPPRESSED
    if isinstance(value, float):
        return f"{value:,.1f}"
    return f"{value:,}"


def natural_key(text: str) -> tuple[Any, ...]:
    """Sort key putting LS2 before LS10 and 'unknown' last."""
    parts = re.split(r"(\d+)", text.lower())
    return (text.lower() == "unknown", tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts))


def status_of(released: Mapping[str, Any], name: str) -> str:
    """The status of one figure in a release (see the module docstring); ``absent`` when
    the release has no such figure (a mean of nobody, say)."""
    figures = released["figures"]
    if name not in figures:
        return "absent"
    if figures.get(name) is not None:
        held = released.get("held") or ()
        return "released-held" if name in held else "released"
    reason = (released.get("suppressed_reason") or {}).get(name)
    if reason in ("primary", "secondary"):
        return f"suppressed-{reason}"
    return "suppressed"


@dataclass(frozen=True)
class Cell:
    """One released figure: its value (None = suppressed), status and name."""

    figure: str
    value: int | float | None
    status: str

    @property
    def text(self) -> str:
        """The value as shown, with its status mark ([p], [s] or [h])."""
        if self.status == "absent":
            return "–"
        mark = _MARKS.get(self.status, "")
        return f"{show(self.value)} {mark}".strip() if mark else show(self.value)


@dataclass
class Table:
    """A titled table of released cells; ``group`` names its figures in the tidy CSV."""

    key: str
    title: str
    header: list[str]
    rows: list[tuple[str, list[Cell]]] = field(default_factory=list)
    note: str = ""


def _cell(released: Mapping[str, Any], name: str) -> Cell:
    return Cell(name, released["figures"].get(name), status_of(released, name))


def overlap_rows(released: Mapping[str, Any], cohort: str = "persons") -> list[tuple[str, Any]]:
    """(label, value) rows of the overlap table for one cohort (persons or frequent)."""
    return [(label, cell.value) for label, cell in _overlap_cells(released, cohort)]


def _overlap_cells(released: Mapping[str, Any], cohort: str) -> list[tuple[str, Cell]]:
    f = released["figures"]
    partners = released["partners"]
    rows = [("distinct people", _cell(released, f"{cohort}.total"))]
    rows += [(f"known to {p}", _cell(released, f"{cohort}.partner.{p}")) for p in partners]
    rows += [(f"known to both {a} and {b}", _cell(released, f"{cohort}.both.{'+'.join(sorted((a, b)))}"))
             for a, b in combinations(partners, 2)]  # fmt: skip
    rows += [(f"known to >= {k} partners", _cell(released, f"{cohort}.at_least_{k}"))
             for k in (2, 3) if f"{cohort}.at_least_{k}" in f]  # fmt: skip
    if cohort == "persons" and "multi.total" in f:
        # the cohort the 'known to >= 2' breakdowns count (perturbed on its own)
        rows.append(("known to >= 2 partners (breakdown cohort)", _cell(released, "multi.total")))
    return rows


def breakdown_values(released: Mapping[str, Any], attr: str) -> list[str]:
    """The values of one attribute that appear in the release, naturally sorted."""
    prefix = f"persons.by.{attr}."
    values = {
        n[len(prefix) :].rsplit(".", 1)[0] for n in released["figures"] if n.startswith(prefix)
    }
    return sorted(values, key=natural_key)


def cross_pairs(released: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The two-way tables a release holds, as (row attribute, column attribute)."""
    figures = released["figures"]
    attrs = list(released.get("attributes", []))
    pairs = []
    for a in attrs:
        for b in attrs:
            if a == b:
                continue
            rows, cols = breakdown_values(released, a), breakdown_values(released, b)
            if rows and cols and cross_name("persons", a, rows[0], b, cols[0]) in figures:
                pairs.append((a, b))
    return pairs


def cross_tables(released: Mapping[str, Any]) -> list[Table]:
    """Two-way tables (e.g. age band by need) per cohort, with row and column totals
    (the one-way breakdowns) and the cohort's total; every cell keeps its status."""
    tables: list[Table] = []
    threshold = released.get("frequent_threshold")
    titles = {**COHORTS, "frequent": f"Frequent users ({threshold} or more contacts)"}
    for a, b in cross_pairs(released):
        rows, cols = breakdown_values(released, a), breakdown_values(released, b)
        for cohort in ("persons", "multi", "frequent"):
            total = "multi.total" if cohort == "multi" else f"{cohort}.total"
            table = Table(
                f"cross-{a}-{b}-{cohort}",
                f"{titles[cohort]}: {a.replace('_', ' ')} by {b.replace('_', ' ')}",
                [a.replace("_", " "), *cols, "all"],
            )
            for va in rows:
                cells = [_cell(released, cross_name(cohort, a, va, b, vb)) for vb in cols]
                table.rows.append((va, [*cells, _cell(released, f"{cohort}.by.{a}.{va}.count")]))
            table.rows.append(("all", [*(_cell(released, f"{cohort}.by.{b}.{vb}.count") for vb in cols),
                                       _cell(released, total)]))  # fmt: skip
            tables.append(table)
    return tables


def is_bound(released: Mapping[str, Any], name: str) -> bool:
    """Whether ``name`` is the ``.low`` or ``.high`` end of another figure's plausible range."""
    base, _, end = name.rpartition(".")
    return end in ("low", "high") and base in released["figures"]


def _has_ranges(released: Mapping[str, Any], cohort: str) -> bool:
    return any(n.startswith(f"{cohort}.") and is_bound(released, n) for n in released["figures"])


def _with_range(released: Mapping[str, Any], name: str, ranges: bool) -> list[Cell]:
    cells = [_cell(released, name)]
    if ranges:
        cells += [_cell(released, f"{name}.low"), _cell(released, f"{name}.high")]
    return cells


def combinations_of(released: Mapping[str, Any], cohort: str) -> list[str]:
    """The partner combinations of a cohort's ``only`` figures (range ends left out)."""
    prefix = f"{cohort}.only."
    combos = [n[len(prefix) :] for n in released["figures"]
              if n.startswith(prefix) and not is_bound(released, n)]  # fmt: skip
    return sorted(combos, key=lambda c: (c.count("+"), c))


def _quality_label(name: str) -> str:
    parts = name.split(".")[1:]
    what = {"single_record": "people known by one record only",
            "multi_record": "people known by several records",
            "link_strength": "people whose weakest link has match weight"}.get(parts[0], parts[0])  # fmt: skip
    rest = parts[1:]
    if rest[:1] == ["total"]:
        return what
    if rest[:1] == ["partner"]:
        return f"{what}: at {'.'.join(rest[1:])}"
    if rest[:1] == ["by"] and len(rest) >= 3:
        return f"{what}: {rest[1].replace('_', ' ')} {'.'.join(rest[2:])}"
    return f"{what} {'.'.join(rest)}".strip()


def result_tables(released: Mapping[str, Any]) -> list[Table]:
    """Every table of a release: overlaps and exact combinations per cohort, breakdowns."""
    tables: list[Table] = []
    threshold = released.get("frequent_threshold")
    for cohort, title in (("persons", "Everyone"),
                          ("frequent", f"Frequent users ({threshold} or more contacts)")):  # fmt: skip
        ranges = _has_ranges(released, cohort)
        extra = ["plausible low", "plausible high"] if ranges else []
        table = Table(f"overlap-{cohort}", f"{title}: who is known to whom", ["", "people", *extra])
        table.rows = [(label, _with_range(released, cell.figure, ranges))
                      for label, cell in _overlap_cells(released, cohort)]  # fmt: skip
        tables.append(table)
        combos = Table(f"combinations-{cohort}", f"{title}: known to exactly these partners",
                       ["partners", "people", *extra])  # fmt: skip
        combos.rows = [(c.replace("+", " + "), _with_range(released, f"{cohort}.only.{c}", ranges))
                       for c in combinations_of(released, cohort)]  # fmt: skip
        tables.append(combos)
    for attr in released.get("attributes", []):
        header = [attr.replace("_", " ")]
        for cohort in ("everyone", "known to >= 2", "frequent users"):
            header += [cohort, f"{cohort}: mean contacts"]
        table = Table(f"by-{attr}", f"People by {attr.replace('_', ' ')}", header)
        for value in breakdown_values(released, attr):
            cells = []
            for cohort in ("persons", "multi", "frequent"):
                base = f"{cohort}.by.{attr}.{value}"
                cells += [
                    _cell(released, f"{base}.count"),
                    _cell(released, f"{base}.mean_contacts"),
                ]
            table.rows.append((value, cells))
        tables.append(table)
    tables += cross_tables(released)
    quality = sorted((n for n in released["figures"] if n.startswith("quality.")), key=natural_key)
    if quality:
        table = Table("quality", "Linkage quality (people, disclosure-controlled)", ["", "people"])
        table.rows = [(_quality_label(n), [_cell(released, n)]) for n in quality]
        tables.append(table)
    shown = figure_names(tables)
    rest = sorted((n for n in released["figures"] if n not in shown), key=natural_key)
    if rest:
        other = Table("other", "Other released figures", ["figure", "value"])
        other.rows = [(name, [_cell(released, name)]) for name in rest]
        tables.append(other)
    return tables


def tidy_rows(released: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per released figure: figure group, breakdown, value, status, figure name."""
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for table in result_tables(released):
        measures = table.header[1:]
        for label, cells in table.rows:
            for measure, cell in zip(measures, cells, strict=True):
                # a two-way table's margins are the one-way figures, listed once
                if cell.status == "absent" or cell.figure in seen:
                    continue
                seen.add(cell.figure)
                group = table.title if len(measures) == 1 else f"{table.title}: {measure}"
                rows.append({"figure_group": group, "breakdown": label,
                             "value": "" if cell.value is None else cell.value,
                             "status": cell.status, "figure": cell.figure})  # fmt: skip
    return rows


def policy_in_words(policy: Mapping[str, Any]) -> list[str]:
    """The disclosure policy as sentences a DPO or a board can read."""
    k, to = policy.get("suppress_below"), policy.get("round_to")
    words: list[str] = []
    dp, cell_key = policy.get("dp"), policy.get("cell_key")
    if isinstance(dp, Mapping):
        words.append(
            "Each count carries differential-privacy noise (epsilon "
            f"{dp.get('epsilon_per_release')} per release, {dp.get('epsilon_budget')} in all "
            "for the project)."
        )
    elif isinstance(cell_key, Mapping):
        words.append(
            "Each count carries cell-key noise (the method ONS used for Census 2021) of at most "
            f"{cell_key.get('max_perturbation')} either way: one person more or less changes the "
            f"chance of any released value by at most a factor of e^{cell_key.get('epsilon')}."
        )
    if "cell_key" in policy or isinstance(dp, Mapping):
        words.append(
            f"Counts below {k} are then suppressed, zero included, so an empty cell and a small "
            "one look the same."
        )
    elif policy.get("style") == "nhs":
        words.append(
            f"Counts of 1 to {k - 1 if isinstance(k, int) else k} are suppressed; "
            "true zeros are shown as 0."
            if k != 1
            else "No count is suppressed."
        )
    elif k is not None:
        words.append(f"Counts below {k} are suppressed.")
    if isinstance(to, int) and to > 1:
        words.append(f"Other counts are rounded to the nearest {to}.")
    if policy.get("min_n_for_mean") is not None:
        words.append(
            "A mean is shown only when its count is released and rests on at least "
            f"{policy['min_n_for_mean']} people."
        )
    if policy.get("contacts_bound") is not None:
        words.append(f"In a mean, a person's contacts count at most {policy['contacts_bound']}.")
    words.append(
        "A cell is also suppressed when it could otherwise be worked out from released "
        "totals and other cells (secondary suppression)."
    )
    known = {
        "style",
        "suppress_below",
        "round_to",
        "min_n_for_mean",
        "dp",
        "cell_key",
        "contacts_bound",
    }
    for key, value in sorted(policy.items()):
        if key not in known and value not in (None, {}, []):
            words.append(f"{key.replace('_', ' ').capitalize()}: {_plain(value)}.")
    return words


def _plain(value: Any) -> str:
    if isinstance(value, Mapping):
        return "; ".join(f"{k.replace('_', ' ')} {_plain(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_plain(v) for v in value)
    return str(value)


def footnotes(released: Mapping[str, Any]) -> list[str]:
    """What the marks in the tables mean, for this release."""
    statuses = {status_of(released, n) for n in released["figures"]}
    notes = [f"{SUPPRESSED} = suppressed: not released under the disclosure policy."]
    if "suppressed-primary" in statuses:
        notes.append("[p] primary suppression: the figure itself is too small to release "
                     "(or a mean rests on too few people).")  # fmt: skip
    if "suppressed-secondary" in statuses:
        notes.append("[s] secondary suppression: hidden so that a small figure cannot be worked "
                     "out by subtracting released figures.")  # fmt: skip
    if "suppressed" in statuses:
        notes.append("This release does not record whether a suppression is primary or secondary.")
    if "released-held" in statuses:
        notes.append("[h] held: the figure changed by less than the suppression threshold since an "
                     "earlier release, so the earlier value is shown again (differences between "
                     "runs reveal nothing about individuals).")  # fmt: skip
    if any(is_bound(released, n) for n in released["figures"]):
        notes.append("Plausible low / high: the same figure when records are linked at a stricter "
                     "and at a looser match threshold, under the same disclosure control; the "
                     "charts draw it as a whisker.")  # fmt: skip
    notes.append("Counts are of distinct people after linkage, not of records.")
    return notes


def figure_names(tables: Iterable[Table]) -> set[str]:
    """Every figure name shown in ``tables`` (used to check nothing is left out)."""
    return {cell.figure for t in tables for _, cells in t.rows for cell in cells}
