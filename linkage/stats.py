"""Exact cohort statistics from linked records (enclave-only; see ``linkage.disclose``).

A *person* is a cluster of linked records. Figures are flat, named counts and means:

- ``persons.total``; ``persons.partner.<p>`` (known to p); ``persons.only.<p+q>`` (known
  to exactly that combination, as an UpSet chart needs); ``persons.both.<p+q>`` (known to
  both, whoever else); ``persons.at_least_2`` / ``persons.at_least_3``;
- the same under ``frequent.`` for frequent users (total contacts >= the threshold);
- per cohort (``persons``, ``multi`` = known to >= 2, ``frequent``) and attribute:
  ``<cohort>.by.<attribute>.<value>.count`` and ``.mean_contacts``.

Alongside the figures come the additive relations between them (a total and the cells
that sum to it, some cells possibly unreleased "virtual" complements), which secondary
suppression needs to make sure no suppressed cell can be recovered by subtraction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from linkage.match import PARTNER, PERSON
from linkage.spec import Spec, attribute_column

__all__ = ["UNKNOWN", "Figures", "Relation", "compute_figures"]

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


def _overlaps(fig: Figures, prefix: str, people: pd.DataFrame, partners: list[str]) -> None:
    combos = people["partners"].value_counts()
    only: dict[str, int] = {}
    if len(partners) <= _ALL_COMBINATIONS_UP_TO:
        # every combination, zeros included: an UpSet chart shows the empty ones too
        for k in range(1, len(partners) + 1):
            for subset in combinations(partners, k):
                only[_combo(subset)] = int(combos.get(_combo(subset), 0))
    else:
        # 2^k combinations is too many to list: only those that occur (the rest are 0)
        only = {str(name): int(n) for name, n in combos.sort_index().items()}
    for name, value in only.items():
        fig.counts[f"{prefix}.only.{name}"] = value
    fig.counts[f"{prefix}.total"] = len(people)
    fig.relations.append(Relation(f"{prefix}.total", tuple(f"{prefix}.only.{c}" for c in only)))

    def cells(test: object) -> tuple[str, ...]:
        return tuple(f"{prefix}.only.{c}" for c in only if test(set(c.split("+"))))  # type: ignore[operator]

    for p in partners:
        fig.counts[f"{prefix}.partner.{p}"] = sum(v for c, v in only.items() if p in c.split("+"))
        fig.relations.append(Relation(f"{prefix}.partner.{p}", cells(lambda s, p=p: p in s)))
    for a, b in combinations(partners, 2):
        name = f"{prefix}.both.{_combo((a, b))}"
        fig.counts[name] = sum(v for c, v in only.items() if {a, b} <= set(c.split("+")))
        fig.relations.append(Relation(name, cells(lambda s, a=a, b=b: {a, b} <= s)))
    for k in (2, 3):
        if len(partners) >= k:
            name = f"{prefix}.at_least_{k}"
            fig.counts[name] = sum(v for c, v in only.items() if c.count("+") + 1 >= k)
            fig.relations.append(Relation(name, cells(lambda s, k=k: len(s) >= k)))


def _breakdown(fig: Figures, cohort: str, total: str, people: pd.DataFrame, attrs: list[str],
               values: dict[str, list[str]]) -> None:  # fmt: skip
    for attr in attrs:
        names = []
        grouped = people.groupby(attr)["contacts"]
        counts, means = grouped.size(), grouped.mean()
        for value in values[attr]:
            base = f"{cohort}.by.{attr}.{value}"
            fig.counts[f"{base}.count"] = int(counts.get(value, 0))
            names.append(f"{base}.count")
            if value in means.index and not np.isnan(means[value]):
                fig.means[f"{base}.mean_contacts"] = float(means[value])
                fig.mean_n[f"{base}.mean_contacts"] = f"{base}.count"
        fig.relations.append(Relation(total, tuple(names)))


def compute_figures(
    records: pa.Table, spec: Spec, frequent_threshold: int | None = None
) -> Figures:
    """Every figure of a run, exactly, with the relations between them."""
    partners = sorted(pc.unique(records.column(PARTNER)).to_pylist())
    people = _people(records, spec, partners)
    threshold = frequent_threshold or spec.statistics.frequent_threshold
    attrs = [a.name for a in spec.attributes if a.kind != "count"]
    values: dict[str, list[str]] = {}
    for attr in spec.attributes:
        if attr.kind == "count":
            continue
        declared = list(attr.band_labels()) if attr.kind == "age_band" else list(attr.values or ())
        seen = sorted(set(people[attr.name]) - set(declared) - {UNKNOWN})
        values[attr.name] = declared + seen + [UNKNOWN]
    fig = Figures(partners=partners, attributes=attrs)

    frequent = people[people["contacts"] >= threshold]
    multi = people[people["n_partners"] >= 2]
    _overlaps(fig, "persons", people, partners)
    _overlaps(fig, "frequent", frequent, partners)
    fig.counts["multi.total"] = len(multi)
    fig.relations.append(Relation("multi.total", ("persons.at_least_2",)))
    for cohort, group, total in (("persons", people, "persons.total"), ("multi", multi, "multi.total"),
                                 ("frequent", frequent, "frequent.total")):  # fmt: skip
        _breakdown(fig, cohort, total, group, attrs, values)

    # complements: a subset cohort's cell and its parent's cell reveal their difference
    non_frequent = people[people["contacts"] < threshold]
    for sub, rest_prefix, rest in (("frequent", "nonfrequent", non_frequent),
                                   ("multi", "single", people[people["n_partners"] < 2])):  # fmt: skip
        before = set(fig.counts)
        if sub == "frequent":
            _overlaps(fig, rest_prefix, rest, partners)
        else:
            fig.counts[f"{rest_prefix}.total"] = len(rest)
        _breakdown(fig, rest_prefix, f"{rest_prefix}.total", rest, attrs, values)
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
        del fig.means[name], fig.mean_n[name]
    return fig
