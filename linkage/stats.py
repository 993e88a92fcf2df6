"""Exact cohort statistics from linked records (enclave-only; see ``linkage.disclose``).

A *person* is a cluster of linked records. Figures are flat, named counts and means:

- ``persons.total``; ``persons.partner.<p>`` (known to p); ``persons.only.<p+q>`` (known
  to exactly that combination, as an UpSet chart needs); ``persons.both.<p+q>`` (known to
  both, whoever else); ``persons.at_least_2`` / ``persons.at_least_3``;
- the same under ``frequent.`` for frequent users (total contacts >= the threshold);
- per cohort (``persons``, ``multi`` = known to >= 2, ``frequent``) and attribute:
  ``<cohort>.by.<attribute>.<value>.count`` and ``.mean_contacts``;
- per cohort, two-way tables of a banded attribute (age band, area) by a category
  attribute (need): ``<cohort>.cross.<a>.<value of a>.<b>.<value of b>.count``, each row
  and each column of which sums to the one-way figure ``<cohort>.by.<a>.<value>.count``
  (resp. ``<b>``), so secondary suppression protects its cells from both directions.

Alongside the figures come the additive relations between them (a total and the cells
that sum to it, some cells possibly unreleased "virtual" complements), which secondary
suppression needs to make sure no suppressed cell can be recovered by subtraction; each
count's population fingerprint (the cell key method's input, see ``linkage.perturb``);
the contact counts behind each mean (so its sum can be bounded and perturbed); and how
many counts and means one person can be in at most (the sensitivity of the release).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from linkage.figure_names import cross_name
from linkage.match import LINK_STRENGTH, PARTNER, PERSON, PERSON_LOOSE, PERSON_STRICT
from linkage.match.link import link_strength_bands
from linkage.perturb import person_keys, xor_fold
from linkage.spec import Spec, attribute_column

__all__ = ["UNKNOWN", "Figures", "Relation", "compute_figures", "cross_name", "crosses_of"]

UNKNOWN = "unknown"
_ALL_COMBINATIONS_UP_TO = 8  # partners; beyond, only the combinations that occur


@dataclass(frozen=True)
class Relation:
    """``total`` = sum of ``cells``. Names in ``virtual`` are never released but derivable."""

    total: str
    cells: tuple[str, ...]


@dataclass
class Figures:
    """Exact figures (never released as such), their relations, and what each mean rests on."""

    counts: dict[str, int] = field(default_factory=dict)
    means: dict[str, float] = field(default_factory=dict)
    mean_n: dict[str, str] = field(default_factory=dict)  # mean figure -> its count figure
    relations: list[Relation] = field(default_factory=list)
    virtual: set[str] = field(default_factory=set)
    partners: list[str] = field(default_factory=list)
    attributes: list[str] = field(default_factory=list)
    #: count figure -> XOR of its people's keys (same people, same fingerprint)
    populations: dict[str, int] = field(default_factory=dict)
    #: mean figure -> {contacts: number of people with that many}
    contacts: dict[str, dict[int, int]] = field(default_factory=dict)
    #: count figures a person can be in beyond the cohorts above (the ranges and the
    #: linkage-quality pack, see :func:`_ranges_and_quality`)
    extra_cells: int = 0
    #: the two-way tables (row attribute, column attribute), see :func:`crosses_of`
    crosses: list[tuple[str, str]] = field(default_factory=list)
    #: attribute -> its values that the data named, not the spec (areas, categories
    #: beyond the dictionary): figures exist for them only because someone has them
    undeclared: dict[str, list[str]] = field(default_factory=dict)
    #: count figures that exist only because someone is in them (the combinations of
    #: partners that occur, beyond ``_ALL_COMBINATIONS_UP_TO`` partners)
    occurring: set[str] = field(default_factory=set)

    def cells_per_person(self) -> int:
        """The most count figures (released or virtual) one person can be in."""
        m, a = len(self.partners), len(self.attributes)
        overlap = 1 + m + 1 + m * (m - 1) // 2 + (m >= 2) + (m >= 3)
        # persons.* and frequent.* (or nonfrequent.*), multi.total or single.total, and
        # one breakdown cell per attribute, and one cell per two-way table, in persons,
        # multi or single, frequent or not
        return 2 * overlap + 1 + 3 * a + 3 * len(self.crosses) + self.extra_cells

    def means_per_person(self) -> int:
        """The most means one person's contacts enter (persons, multi, frequent)."""
        return 3 * len(self.attributes)


def _combo(names: Sequence[str]) -> str:
    return "+".join(sorted(names))


def _people(records: pa.Table, spec: Spec, partners: list[str]) -> pd.DataFrame:
    """One row per person: the set of partners, total contacts, modal attributes."""
    df = records.to_pandas()
    # partners as bits: a person's set of partners is the OR (= sum of distinct) of bits
    bits = np.left_shift(1, pd.Categorical(df[PARTNER], categories=partners).codes.astype(np.int64))
    seen = pd.DataFrame({PERSON: df[PERSON].to_numpy(), "bit": bits}).drop_duplicates()
    mask = seen.groupby(PERSON, sort=True)["bit"].sum()
    people = pd.DataFrame(index=mask.index)
    ids = mask.index.to_numpy()
    if not np.issubdtype(ids.dtype, np.integer):
        ids = pd.util.hash_pandas_object(pd.Series(ids), index=False).to_numpy()
    people["key"] = person_keys(ids)
    names = {m: _combo([p for i, p in enumerate(partners) if m >> i & 1]) for m in mask.unique()}
    people["partners"] = mask.map(names)
    people["n_partners"] = mask.map({m: int(m).bit_count() for m in names})
    contacts = spec.statistics.contacts_attribute
    if contacts is not None:
        people["contacts"] = (
            df.groupby(PERSON, sort=True)[attribute_column(contacts)].sum(min_count=1).fillna(0)
        )
    else:
        people["contacts"] = 0
    for attr in spec.attributes:
        if attr.kind == "count":
            continue
        column = attribute_column(attr.name)
        known = df[[PERSON, column]].dropna()
        if known.empty:
            people[attr.name] = UNKNOWN
            continue
        # the most frequent value among the person's records; ties -> smallest value
        counts = known.groupby([PERSON, column]).size().reset_index(name="n")
        counts = counts.sort_values([PERSON, "n", column], ascending=[True, False, True])
        mode = counts.drop_duplicates(PERSON).set_index(PERSON)[column]
        people[attr.name] = mode.reindex(people.index).fillna(UNKNOWN).astype(str)
    return people


def _fold(keys: pd.Series) -> int:
    return xor_fold(keys.to_numpy(dtype=np.uint64))


def _overlaps(fig: Figures, prefix: str, people: pd.DataFrame, partners: list[str]) -> None:
    combos = people["partners"].value_counts()
    folds = people.groupby("partners")["key"].agg(_fold) if len(people) else pd.Series()
    only: dict[str, int] = {}
    if len(partners) <= _ALL_COMBINATIONS_UP_TO:
        # every combination, zeros included: an UpSet chart shows the empty ones too
        for k in range(1, len(partners) + 1):
            for subset in combinations(partners, k):
                only[_combo(subset)] = int(combos.get(_combo(subset), 0))
    else:
        # 2^k combinations is too many to list: only those that occur (the rest are 0)
        only = {str(name): int(n) for name, n in combos.sort_index().items()}
        fig.occurring |= {f"{prefix}.only.{name}" for name in only}
    only_fold = {c: int(folds.get(c, 0)) for c in only}

    def add(name: str, members: list[str]) -> None:
        fig.counts[name] = sum(only[c] for c in members)
        fold = 0
        for c in members:
            fold ^= only_fold[c]
        fig.populations[name] = fold

    for name in only:
        add(f"{prefix}.only.{name}", [name])
    add(f"{prefix}.total", list(only))
    fig.relations.append(Relation(f"{prefix}.total", tuple(f"{prefix}.only.{c}" for c in only)))

    def members(test: object) -> list[str]:
        return [c for c in only if test(set(c.split("+")))]  # type: ignore[operator]

    def cells(names: list[str]) -> tuple[str, ...]:
        return tuple(f"{prefix}.only.{c}" for c in names)

    for p in partners:
        chosen = members(lambda s, p=p: p in s)
        add(f"{prefix}.partner.{p}", chosen)
        fig.relations.append(Relation(f"{prefix}.partner.{p}", cells(chosen)))
    for a, b in combinations(partners, 2):
        name = f"{prefix}.both.{_combo((a, b))}"
        chosen = members(lambda s, a=a, b=b: {a, b} <= s)
        add(name, chosen)
        fig.relations.append(Relation(name, cells(chosen)))
    for k in (2, 3):
        if len(partners) >= k:
            name = f"{prefix}.at_least_{k}"
            chosen = members(lambda s, k=k: len(s) >= k)
            add(name, chosen)
            fig.relations.append(Relation(name, cells(chosen)))


def _breakdown(fig: Figures, cohort: str, total: str, people: pd.DataFrame, attrs: list[str],
               values: dict[str, list[str]]) -> None:  # fmt: skip
    for attr in attrs:
        names = []
        grouped = people.groupby(attr)["contacts"]
        counts, means = grouped.size(), grouped.mean()
        folds = people.groupby(attr)["key"].agg(_fold) if len(people) else pd.Series()
        spread = people.groupby([attr, "contacts"]).size()
        for value in values[attr]:
            base = f"{cohort}.by.{attr}.{value}"
            fig.counts[f"{base}.count"] = int(counts.get(value, 0))
            fig.populations[f"{base}.count"] = int(folds.get(value, 0))
            names.append(f"{base}.count")
            if value in means.index and not np.isnan(means[value]):
                fig.means[f"{base}.mean_contacts"] = float(means[value])
                fig.mean_n[f"{base}.mean_contacts"] = f"{base}.count"
                within = cast(pd.Series, spread.loc[value])
                fig.contacts[f"{base}.mean_contacts"] = dict(
                    zip(within.index.to_numpy(dtype=np.int64).tolist(),
                        within.to_numpy(dtype=np.int64).tolist(), strict=True)
                )  # fmt: skip
        fig.relations.append(Relation(total, tuple(names)))


def crosses_of(spec: Spec) -> list[tuple[str, str]]:
    """The two-way tables of a spec: each banded attribute (age band, area) by each
    category attribute (need), in the spec's order. Sector-level areas are left out: a
    sector by need table would be almost all suppressed cells."""
    banded = [a.name for a in spec.attributes
              if a.kind == "age_band" or (a.kind == "area" and not a.sector)]  # fmt: skip
    categories = [a.name for a in spec.attributes if a.kind == "category"]
    return [(a, b) for a in banded for b in categories]


def _cross(fig: Figures, cohort: str, people: pd.DataFrame, values: dict[str, list[str]]) -> None:
    """Counts of ``cohort`` in every cell of each two-way table, with the row and column
    relations to the one-way breakdowns (counts only: no means, so no extra sums)."""
    for a, b in fig.crosses:
        counts = people.groupby([a, b]).size() if len(people) else pd.Series(dtype=np.int64)
        folds = people.groupby([a, b])["key"].agg(_fold) if len(people) else pd.Series()
        columns: dict[str, list[str]] = {vb: [] for vb in values[b]}
        for va in values[a]:
            row = []
            for vb in values[b]:
                name = cross_name(cohort, a, va, b, vb)
                fig.counts[name] = int(counts.get((va, vb), 0))
                fig.populations[name] = int(folds.get((va, vb), 0))
                row.append(name)
                columns[vb].append(name)
            fig.relations.append(Relation(f"{cohort}.by.{a}.{va}.count", tuple(row)))
        for vb, cells in columns.items():
            fig.relations.append(Relation(f"{cohort}.by.{b}.{vb}.count", tuple(cells)))


def compute_figures(
    records: pa.Table, spec: Spec, frequent_threshold: int | None = None
) -> Figures:
    """Every figure of a run, exactly, with the relations between them."""
    partners = sorted(pc.unique(records.column(PARTNER)).to_pylist())
    people = _people(records, spec, partners)
    threshold = frequent_threshold or spec.statistics.frequent_threshold
    attrs = [a.name for a in spec.attributes if a.kind != "count"]
    values: dict[str, list[str]] = {}
    undeclared: dict[str, list[str]] = {}
    for attr in spec.attributes:
        if attr.kind == "count":
            continue
        declared = list(attr.band_labels()) if attr.kind == "age_band" else list(attr.values or ())
        seen = sorted(set(people[attr.name]) - set(declared) - {UNKNOWN})
        values[attr.name] = declared + seen + [UNKNOWN]
        undeclared[attr.name] = seen
    fig = Figures(partners=partners, attributes=attrs, crosses=crosses_of(spec),
                  undeclared=undeclared)  # fmt: skip

    frequent = people[people["contacts"] >= threshold]
    multi = people[people["n_partners"] >= 2]
    _overlaps(fig, "persons", people, partners)
    _overlaps(fig, "frequent", frequent, partners)
    fig.counts["multi.total"] = len(multi)
    fig.populations["multi.total"] = _fold(multi["key"])
    fig.relations.append(Relation("multi.total", ("persons.at_least_2",)))
    for cohort, group, total in (("persons", people, "persons.total"), ("multi", multi, "multi.total"),
                                 ("frequent", frequent, "frequent.total")):  # fmt: skip
        _breakdown(fig, cohort, total, group, attrs, values)
        _cross(fig, cohort, group, values)

    # complements: a subset cohort's cell and its parent's cell reveal their difference
    non_frequent = people[people["contacts"] < threshold]
    for sub, rest_prefix, rest in (("frequent", "nonfrequent", non_frequent),
                                   ("multi", "single", people[people["n_partners"] < 2])):  # fmt: skip
        before = set(fig.counts)
        if sub == "frequent":
            _overlaps(fig, rest_prefix, rest, partners)
        else:
            fig.counts[f"{rest_prefix}.total"] = len(rest)
            fig.populations[f"{rest_prefix}.total"] = _fold(rest["key"])
        _breakdown(fig, rest_prefix, f"{rest_prefix}.total", rest, attrs, values)
        _cross(fig, rest_prefix, rest, values)
        fig.virtual |= set(fig.counts) - before
        for name in list(fig.counts):
            if name.startswith(f"{sub}."):
                twin = rest_prefix + name[len(sub) :]
                parent = "persons" + name[len(sub) :]
                if sub == "multi" and name == "multi.total":
                    twin, parent = "single.total", "persons.total"
                if twin in fig.counts and parent in fig.counts:
                    fig.relations.append(Relation(parent, (name, twin)))
    for name in [m for m in fig.means if m.split(".")[0] in ("nonfrequent", "single")]:
        del fig.means[name], fig.mean_n[name], fig.contacts[name]
    _ranges_and_quality(fig, records, partners, attrs, values)
    return fig


def _partner_sets(records: pa.Table, column: str, partners: list[str]) -> pd.DataFrame:
    """One row per person of the clustering in ``column``: its partners and its key."""
    person = records.column(column).to_numpy()
    codes = pd.Categorical(records.column(PARTNER).to_pandas(), categories=partners).codes
    seen = pd.DataFrame({"p": person, "bit": np.left_shift(1, codes.astype(np.int64))})
    mask = seen.drop_duplicates().groupby("p", sort=True)["bit"].sum()
    names = {m: _combo([p for i, p in enumerate(partners) if m >> i & 1]) for m in mask.unique()}
    people = pd.DataFrame({"partners": mask.map(names)}, index=mask.index)
    people["key"] = person_keys(mask.index.to_numpy())
    return people


def _ranges_and_quality(fig: Figures, records: pa.Table, partners: list[str], attrs: list[str],
                        values: dict[str, list[str]]) -> None:  # fmt: skip
    """Add a plausible range to every overlap and distinct-people figure, and the
    linkage-quality pack, as ordinary counts under the same disclosure control.

    - ``persons.<...>.low`` / ``.high``: the least and most the figure is when records
      are clustered at a stricter and a looser match threshold (``linkage.match``'s
      ``person_id_strict`` / ``person_id_loose``), the spec's threshold included;
    - ``quality.single_record.total``, ``.partner.<p>`` and ``.by.<attribute>.<value>``:
      people known by one record only (records linked to nobody), overall, by partner
      and by attribute; beside ``persons.by.<attribute>.<value>.count`` they give the
      link rate of each group, so uneven linkage error shows;
    - ``quality.multi_record.total`` and ``quality.link_strength.<band>``: people of
      several records by the match weight of their weakest link (the match-weight
      distribution, one count per person rather than per pair).
    """
    overlap_cells = 0
    alternatives = [c for c in (PERSON_STRICT, PERSON_LOOSE) if c in records.column_names]
    if alternatives:
        found: dict[str, list[int]] = {}
        for column in alternatives:
            alt = Figures()
            _overlaps(alt, "persons", _partner_sets(records, column, partners), partners)
            for name, value in alt.counts.items():
                found.setdefault(name, []).append(value)
        for name, others in found.items():
            if name in fig.counts:
                fig.counts[f"{name}.low"] = min(fig.counts[name], *others)
                fig.counts[f"{name}.high"] = max(fig.counts[name], *others)
                overlap_cells += 1
    person = records.column(PERSON).to_numpy()
    _, inverse, sizes = np.unique(person, return_inverse=True, return_counts=True)
    single = records.filter(pa.array(sizes[inverse] == 1))
    fig.counts["quality.single_record.total"] = single.num_rows
    partner_of = np.asarray(single.column(PARTNER).to_pylist(), dtype=object)
    cells = []
    for p in partners:
        fig.counts[f"quality.single_record.partner.{p}"] = int((partner_of == p).sum())
        cells.append(f"quality.single_record.partner.{p}")
    fig.relations.append(Relation("quality.single_record.total", tuple(cells)))
    for attr in attrs:
        column = single.column(attribute_column(attr)).to_pandas().fillna(UNKNOWN).astype(str)
        counts = column.value_counts()
        names = []
        for label in values[attr]:
            name = f"quality.single_record.by.{attr}.{label}"
            fig.counts[name] = int(counts.get(label, 0))
            names.append(name)
        fig.relations.append(Relation("quality.single_record.total", tuple(names)))
    if LINK_STRENGTH in records.column_names:
        # people of two or more records by the strength of their weakest link
        per_person = pd.DataFrame({"p": person, "band": records.column(LINK_STRENGTH).to_pandas()})
        bands = per_person.drop_duplicates("p")["band"].dropna().value_counts()
        cells = []
        for band in link_strength_bands():
            fig.counts[f"quality.link_strength.{band}"] = int(bands.get(band, 0))
            cells.append(f"quality.link_strength.{band}")
        fig.counts["quality.multi_record.total"] = int((sizes >= 2).sum())
        fig.relations.append(Relation("quality.multi_record.total", tuple(cells)))
        fig.relations.append(Relation("persons.total", ("quality.single_record.total",
                                                        "quality.multi_record.total")))  # fmt: skip
    # each range figure is a cell of another clustering (two of them); a person with one
    # record is in the total, one partner cell and one cell per attribute, or else (with
    # several records) in one band and the multi-record total: at most 2 + attributes
    m = len(partners)
    per_clustering = 1 + m + 1 + m * (m - 1) // 2 + (m >= 2) + (m >= 3) if overlap_cells else 0
    fig.extra_cells = 2 * per_clustering + 2 + len(attrs)
