"""Board-ready downloads of a release: tidy CSV and one Excel workbook with a notes sheet."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import Any

from service.results.tables import (
    Table,
    footnotes,
    policy_in_words,
    result_tables,
    show,
    tidy_rows,
)

__all__ = ["TIDY_COLUMNS", "csv_text", "notes_rows", "xlsx_bytes"]

TIDY_COLUMNS = ["figure_group", "breakdown", "value", "status", "figure"]


def csv_text(released: Mapping[str, Any]) -> str:
    """Every released figure, one per row, in :data:`TIDY_COLUMNS` (blank value = suppressed)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=TIDY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(tidy_rows(released))
    return buf.getvalue()


def notes_rows(
    released: Mapping[str, Any],
    *,
    project: str | None = None,
    submissions: Sequence[Mapping[str, Any]] = (),
) -> list[tuple[str, str]]:
    """(heading, text) lines of the notes: project, run, date, partners, policy, footnotes."""
    rows: list[tuple[str, str]] = []
    if project:
        rows.append(("Project", project))
    rows += [
        ("Run", str(released.get("run_id", ""))),
        ("Released", str(released.get("released_at", ""))),
        ("Released to", str(released.get("released_to", ""))),
        ("Frequent users", f"{released.get('frequent_threshold')} or more contacts"),
    ]
    by_partner = {str(s.get("partner")): s for s in submissions}
    for partner in released.get("partners", []):
        sub = by_partner.get(partner)
        text = (f"submission version {sub.get('version')}, received {str(sub.get('received_at', ''))[:10]}"
                if sub else "submission used by this run")  # fmt: skip
        rows.append((f"Partner: {partner}", text))
    for line in policy_in_words(released.get("policy", {})):
        rows.append(("Disclosure policy", line))
    for note in footnotes(released):
        rows.append(("Footnote", note))
    rows.append(("Source", "pprl: privacy-preserving record linkage; disclosure-controlled "
                           "aggregates released by the enclave."))  # fmt: skip
    return rows


def xlsx_bytes(
    released: Mapping[str, Any],
    *,
    project: str | None = None,
    submissions: Sequence[Mapping[str, Any]] = (),
) -> bytes:
    """One workbook: a notes sheet, a sheet per table (values as numbers, marks beside
    them) and the tidy long table of every figure."""
    from openpyxl import Workbook
    from openpyxl.styles import Font, PatternFill
    from openpyxl.utils import get_column_letter

    book = Workbook()
    notes = book.active
    assert notes is not None
    notes.title = "Notes"
    bold = Font(bold=True)
    notes.append(["pprl released results"])
    notes["A1"].font = Font(bold=True, size=14)
    for heading, text in notes_rows(released, project=project, submissions=submissions):
        notes.append([heading, text])
        notes.cell(notes.max_row, 1).font = bold
    notes.column_dimensions["A"].width = 24
    notes.column_dimensions["B"].width = 110

    grey = PatternFill("solid", fgColor="DDDDDD")
    used: set[str] = {"Notes", "All figures"}
    for table in result_tables(released):
        title = _sheet_title(table.key, used)
        sheet = book.create_sheet(title)
        sheet.append([table.title])
        sheet["A1"].font = bold
        header = [table.header[0] or "figure"]
        for measure in table.header[1:]:
            header += [measure, "status"]
        sheet.append(header)
        for cell in sheet[2]:
            cell.font = bold
        for label, cells in table.rows:
            line: list[Any] = [label]
            for c in cells:
                line += [c.value if c.value is not None else show(None), c.status]
            sheet.append(line)
            for i, c in enumerate(cells):
                if c.value is None:
                    sheet.cell(sheet.max_row, 2 + 2 * i).fill = grey
        marks = _marks_used(table)
        if marks:  # the marks of this sheet explained on it, not only on the notes sheet
            sheet.append([])
            for note in marks:
                sheet.append([note])
        for col in range(1, len(header) + 1):
            sheet.column_dimensions[get_column_letter(col)].width = 36 if col == 1 else 18

    tidy = book.create_sheet("All figures")
    rows = tidy_rows(released)
    tidy.append(["figure_group", "breakdown", "value", "status", "figure"])
    for cell in tidy[1]:
        cell.font = bold
    for row in rows:
        tidy.append([row["figure_group"], row["breakdown"],
                     row["value"] if row["value"] != "" else None, row["status"], row["figure"]])  # fmt: skip
    for letter, width in zip("ABCDE", (60, 36, 12, 22, 50), strict=True):
        tidy.column_dimensions[letter].width = width
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


_MARK_NOTES = {
    "suppressed-primary": "suppressed-primary: the figure itself is too small to release "
    "(or a mean rests on too few people).",
    "suppressed-secondary": "suppressed-secondary: hidden so that a small figure cannot be "
    "worked out from its row or column total and the other released cells.",
    "released-held": "released-held: unchanged since an earlier release by the stability rule.",
}


def _marks_used(table: Table) -> list[str]:
    """Footnotes for the statuses that occur in ``table`` (in a fixed order)."""
    used = {cell.status for _, cells in table.rows for cell in cells}
    return [f"Note: {text}" for status, text in _MARK_NOTES.items() if status in used]


def _sheet_title(key: str, used: set[str]) -> str:
    """An Excel sheet name (31 characters, no []:*?/\\) unique in the workbook."""
    base = "".join(ch for ch in key if ch not in "[]:*?/\\")[:31] or "table"
    title, n = base, 2
    while title in used:
        suffix = f" ({n})"
        title, n = base[: 31 - len(suffix)] + suffix, n + 1
    used.add(title)
    return title
