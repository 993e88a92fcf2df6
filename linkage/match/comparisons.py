"""Splink comparisons built from a spec's hashed tokens, as graded levels.

Tokens are keyed hashes, so every level is an equality of tokens, chosen so that fuzzy
agreement survived hashing: for names exact > forename and surname swapped > nickname >
phonetic > a shared part of a double-barrelled name > first three letters > initial; for
ids exact > one character differs (a masked third agrees) > characters transposed; for dates full > day/month
swapped > year+month > month+day > year; for UK postcodes full > sector > district.
Where the spec asks for Bloom filters, Dice-similarity levels sit between exact and the
derived levels (DuckDB only: Dice needs its bit functions).
"""

from __future__ import annotations

from typing import Any

import splink.comparison_level_library as cll
import splink.comparison_library as cl

from linkage.spec import IdentifierSpec, Spec, bloom_column, token_column

__all__ = ["EXTRACT_NUMBER", "ORIGIN", "comparisons_for", "origin_comparison"]


def _col(ident: IdentifierSpec, variant: str) -> str:
    return token_column(ident.name, variant)


def _eq(ident: IdentifierSpec, a: str, b: str | None = None) -> str:
    b = b or a
    # unquoted: token column names are plain identifiers, and quoting differs by dialect
    return f"{_col(ident, a)}_l = {_col(ident, b)}_r"


def _dice(column: str, threshold: float) -> cll.CustomLevel:
    left, right = f"{column}_l", f"{column}_r"
    sql = (
        f"(2.0 * bit_count({left}::BIT & {right}::BIT)) / "
        f"nullif(bit_count({left}::BIT) + bit_count({right}::BIT), 0) >= {threshold}"
    )
    return cll.CustomLevel(sql, label_for_charts=f"Dice >= {threshold}")


#: m = u: a Bayes factor of 1, fixed (see :func:`_swapped`)
_NEUTRAL = 0.01


def _swapped(ident: IdentifierSpec, other: IdentifierSpec) -> Any:
    """Forename and surname the other way round: both cross-field equalities hold.

    One event seen by two comparisons: it carries its evidence in the forename's
    comparison only (trained there, so its u is the chance that two strangers' names
    agree crosswise, about the product of the two names' u). In the surname's comparison
    the same level is neutral, fixed at m = u, so the pair neither falls to "disagree"
    nor counts the swap twice (counted twice, a swapped name outweighed date of birth
    and postcode together and merged strangers who shared a common name)."""
    mine, theirs = _col(ident, "swap"), _col(other, "swap")
    sql = f"{mine}_l = {theirs}_r AND {theirs}_l = {mine}_r"
    level: Any = cll.CustomLevel(sql, label_for_charts="forename and surname swapped")
    if ident.type == "surname":
        level = level.configure(m_probability=_NEUTRAL, u_probability=_NEUTRAL,
                                fix_m_probability=True, fix_u_probability=True)  # fmt: skip
    return level


def _name(
    ident: IdentifierSpec, tf: bool, bloom: bool, other: IdentifierSpec | None = None
) -> cl.CustomComparison:
    v = set(ident.active_variants)
    levels: list[Any] = [cll.NullLevel(_col(ident, "exact"))]
    exact = cll.ExactMatchLevel(_col(ident, "exact"), term_frequency_adjustments=tf)
    levels.append(exact.configure(label_for_charts="exact"))
    if other is not None and "swap" in v and "swap" in other.active_variants:
        levels.append(_swapped(ident, other))
    if bloom:
        levels.append(_dice(bloom_column(ident.name), 0.9))
    if "nickname" in v:
        levels.append(cll.CustomLevel(_eq(ident, "nickname"), label_for_charts="nickname root"))
    if "phonetic" in v:
        levels.append(cll.CustomLevel(_eq(ident, "phonetic"), label_for_charts="phonetic code"))
    if {"part1", "part2"} <= v:
        # parts are hashed in the exact domain: any part of one equals any part of the other
        pairs = [("part1", "part1"), ("part1", "part2"), ("part2", "part1"), ("part2", "part2")]
        sql = " OR ".join(f"({_eq(ident, a, b)})" for a, b in pairs)
        levels.append(cll.CustomLevel(sql, label_for_charts="shared name part"))
    if bloom:
        levels.append(_dice(bloom_column(ident.name), 0.7))
    if "prefix3" in v:
        levels.append(
            cll.CustomLevel(_eq(ident, "prefix3"), label_for_charts="first three letters")
        )
    if "initial" in v:
        levels.append(cll.CustomLevel(_eq(ident, "initial"), label_for_charts="initial"))
    levels.append(cll.ElseLevel().configure(label_for_charts="disagree"))
    return cl.CustomComparison(levels, output_column_name=ident.name)


def _date(ident: IdentifierSpec) -> cl.CustomComparison:
    v = set(ident.active_variants)
    levels: list[Any] = [
        cll.NullLevel(_col(ident, "full")),
        cll.ExactMatchLevel(_col(ident, "full")),
    ]
    if "swapped" in v:
        # the swapped date is hashed as a full date (see linkage.encode.table)
        sql = f"({_eq(ident, 'full', 'swapped')}) OR ({_eq(ident, 'swapped', 'full')})"
        levels.append(cll.CustomLevel(sql, label_for_charts="day and month swapped"))
    for variant, label in (("year_month", "same year and month"), ("month_day", "same day and month"),
                           ("year", "same year")):  # fmt: skip
        if variant in v:
            levels.append(cll.CustomLevel(_eq(ident, variant), label_for_charts=label))
    levels.append(cll.ElseLevel().configure(label_for_charts="disagree"))
    return cl.CustomComparison(levels, output_column_name=ident.name)


def _graded(ident: IdentifierSpec, order: tuple[str, ...]) -> cl.CustomComparison:
    v = [variant for variant in order if variant in ident.active_variants]
    levels: list[Any] = [
        cll.NullLevel(_col(ident, v[0])),
        cll.ExactMatchLevel(_col(ident, v[0])).configure(label_for_charts="exact"),
    ]
    levels += [cll.CustomLevel(_eq(ident, variant), label_for_charts=variant) for variant in v[1:]]
    levels.append(cll.ElseLevel().configure(label_for_charts="disagree"))
    return cl.CustomComparison(levels, output_column_name=ident.name)


def _id(ident: IdentifierSpec) -> cl.CustomComparison:
    v = set(ident.active_variants)
    levels: list[Any] = [
        cll.NullLevel(_col(ident, "exact")),
        cll.ExactMatchLevel(_col(ident, "exact")).configure(label_for_charts="exact"),
    ]
    masks = [m for m in ("mask1", "mask2", "mask3") if m in v]
    if masks:
        sql = " OR ".join(f"({_eq(ident, m)})" for m in masks)
        levels.append(cll.CustomLevel(sql, label_for_charts="one character differs"))
    if "sorted" in v:
        levels.append(
            cll.CustomLevel(_eq(ident, "sorted"), label_for_charts="characters transposed")
        )
    levels.append(cll.ElseLevel().configure(label_for_charts="disagree"))
    return cl.CustomComparison(levels, output_column_name=ident.name)


def comparisons_for(spec: Spec, *, dice: bool = True) -> list[Any]:
    """One comparison per identifier of ``spec`` (``dice=False`` drops Bloom levels)."""
    bloom_fields = set(spec.encoding.bloom.fields) if spec.encoding.bloom and dice else set()
    tf_fields = spec.matching.term_frequency
    if tf_fields is None:
        tf_fields = tuple(i.name for i in spec.identifiers if i.type in ("forename", "surname"))
    out: list[Any] = []
    first = {i.type: i for i in reversed(spec.identifiers)}
    partner_of = {"forename": first.get("surname"), "surname": first.get("forename")}
    for ident in spec.identifiers:
        if ident.type in ("forename", "surname"):
            other = partner_of[ident.type] if first[ident.type] is ident else None
            out.append(_name(ident, ident.name in tf_fields, ident.name in bloom_fields, other))
        elif ident.type == "id":
            out.append(_id(ident))
        elif ident.type == "date":
            out.append(_date(ident))
        elif ident.type == "uk_postcode":
            out.append(_graded(ident, ("full", "sector", "district")))
        elif ident.type == "postcode":
            out.append(_graded(ident, ("full", "prefix3")))
        else:  # nhs_number, sex, string, id
            out.append(_graded(ident, ("exact",)))
    return out


#: output column of :func:`origin_comparison`
ORIGIN = "extract"
#: input column with each record's extract number (0, 1, ...), which the enclave adds:
#: Splink's own ``source_dataset`` would do, but its settings check cannot see it and
#: logged "Errors were identified in your settings dictionary" on every run
EXTRACT_NUMBER = "extract_no"


def origin_comparison() -> cl.CustomComparison:
    """Whether the two records come from the same partner's extract or from two.

    The chance that two records are the same person differs between two records of one
    extract (a duplicate) and one record from each of two (a link): one pooled prior is
    too high for the first and too low for the second when the partners differ in size
    and duplication. As a comparison with fixed m and u, Fellegi-Sunter gives each kind
    of pair its own prior: u is the share of all pairs that lie within one extract
    (exact, from the sizes), m the share of matching pairs that do (estimated with the
    prior, see ``linkage.match.training``). Until then both are equal (no evidence).
    """
    levels: list[Any] = [
        cll.CustomLevel(f"{EXTRACT_NUMBER}_l = {EXTRACT_NUMBER}_r").configure(
            label_for_charts="same extract"
        ),
        cll.ElseLevel().configure(label_for_charts="different extracts"),
    ]
    same, other = (
        level.configure(m_probability=0.5, u_probability=0.5,
                        fix_m_probability=True, fix_u_probability=True)
        for level in levels
    )  # fmt: skip
    return cl.CustomComparison([same, other], output_column_name=ORIGIN)
