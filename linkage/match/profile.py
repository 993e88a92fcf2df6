"""Aggregate facts about each token column, measured inside the enclave before training.

Blocking on, or training EM on, a column where one value covers a large share of the
records (a shared postcode of a hostel, a placeholder date, a default id) makes pairs
of household members or strangers, not of people. These facts decide which columns may
be used; only rounded aggregates ever leave (as diagnostics), never a value. Of an
identifier that names one person (postcode, id, birth date), such a value itself is
read as missing (:func:`mask_dominant`): it is no evidence for or against a match.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["PERSONAL_TYPES", "ColumnProfile", "mask_dominant", "profile_columns"]

#: a column whose most frequent value covers more of its non-empty records than this is
#: never blocked or trained on by itself
DEGENERATE_SHARE = 0.05


@dataclass(frozen=True)
class ColumnProfile:
    """How informative one token column is over all extracts together."""

    column: str
    rows: int  # records in all extracts
    filled: int  # records with a value
    distinct: int  # distinct values
    top_count: int  # records holding the most frequent value

    @property
    def top_share(self) -> float:
        """Share of the filled records that hold the most frequent value."""
        return self.top_count / self.filled if self.filled else 0.0

    @property
    def distinct_ratio(self) -> float:
        """Distinct values per filled record (1.0: every value unique)."""
        return self.distinct / self.filled if self.filled else 0.0

    @property
    def degenerate(self) -> bool:
        """True when one value covers too many records to block or train on alone."""
        return self.filled > 0 and self.top_share > DEGENERATE_SHARE

    def summary(self) -> dict[str, float | int]:
        """Rounded aggregates, safe to show an analyst (no value, no small exact count)."""
        return {
            "filled_share": round(self.filled / self.rows, 2) if self.rows else 0.0,
            "top_value_share": round(self.top_share, 2),
            "distinct_ratio": round(self.distinct_ratio, 2),
        }


def profile_columns(tables: Iterable[pa.Table], columns: Iterable[str]) -> dict[str, ColumnProfile]:
    """Profile ``columns`` over the union of ``tables`` (Arrow, any number of partners)."""
    tables = list(tables)
    out: dict[str, ColumnProfile] = {}
    for column in columns:
        chunks = [chunk for t in tables for chunk in t.column(column).chunks]
        rows = sum(len(c) for c in chunks)
        filled = rows - sum(c.null_count for c in chunks)
        if filled == 0:
            out[column] = ColumnProfile(column, rows, 0, 0, 0)
            continue
        values = pa.chunked_array(chunks).drop_null()
        counts = pc.value_counts(values).field("counts")
        top = int(pc.max(counts).as_py())
        out[column] = ColumnProfile(column, rows, filled, len(counts), top)
    return out


#: identifier types whose value names one person: a value held by many records of
#: these is a placeholder or an institution (a hostel's postcode, a default id, a
#: made-up date), not evidence. Names are left to term frequencies; sex and free
#: strings are categories.
PERSONAL_TYPES = frozenset({"postcode", "uk_postcode", "id", "nhs_number", "date"})
#: a dominant value is also held by more than this many records per extract
MIN_DOMINANT_PER_EXTRACT = 10


def mask_dominant(
    tables: list[pa.Table], fields: dict[str, list[str]]
) -> tuple[list[pa.Table], dict[str, float]]:
    """Tables with each field's dominant value read as missing; field -> its share.

    ``fields``: field -> its token columns, the first the full value. A value of the
    full column held by more than :data:`DEGENERATE_SHARE` of the records that have
    one (over all tables), and by more than :data:`MIN_DOMINANT_PER_EXTRACT` records
    per extract (no one person, with a household or duplicates, holds that many; tiny
    linkages keep their values), is masked in all of the field's columns of those records:
    two records at a hostel's postcode agree on it, and one of them disagrees with the
    person's home postcode elsewhere, but neither says who anyone is (Fellegi-Sunter
    treats it as missing, neither agreement nor disagreement).
    """
    shares: dict[str, float] = {}
    for field_name, columns in fields.items():
        full = columns[0]
        chunks = [chunk for t in tables for chunk in t.column(full).chunks]
        values = pa.chunked_array(chunks, type=tables[0].schema.field(full).type).drop_null()
        if len(values) == 0:
            continue
        counts = pc.value_counts(values)
        share = pc.divide(pc.cast(counts.field("counts"), pa.float64()), float(len(values)))
        floor = MIN_DOMINANT_PER_EXTRACT * len(tables)
        common = pc.and_(pc.greater(share, DEGENERATE_SHARE),
                         pc.greater(counts.field("counts"), floor))  # fmt: skip
        dominant = counts.field("values").filter(common)
        if len(dominant) == 0:
            continue
        shares[field_name] = float(pc.max(share).as_py())
        out = []
        for table in tables:
            hit = pc.fill_null(pc.is_in(table.column(full), value_set=dominant), False)
            for column in columns:
                i = table.schema.get_field_index(column)
                kept = pc.if_else(hit, pa.scalar(None, table.schema.field(i).type), table.column(i))
                table = table.set_column(i, table.schema.field(i), kept)
            out.append(table)
        tables = out
    return tables, shares
