"""Results presentation: every figure shown once with the right status, natural order,
tidy CSV and the Excel workbook agree with the release (hypothesis over many releases)."""

from __future__ import annotations

import csv
import io
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook

from service.results import csv_text, natural_key, result_tables, status_of, tidy_rows, xlsx_bytes
from service.results.export import TIDY_COLUMNS, notes_rows
from service.results.tables import footnotes, policy_in_words
from tests.service.results.releases import enclave_release, releases


def _expected_status(release: dict[str, Any], name: str) -> str:
    value = release["figures"][name]
    if value is not None:
        return "released-held" if name in release.get("held", []) else "released"
    reason = release.get("suppressed_reason", {}).get(name)
    return f"suppressed-{reason}" if reason else "suppressed"


@given(releases())
@settings(max_examples=60, deadline=None)
def test_tidy_rows_hold_every_figure_once_with_its_value_and_status(
    release: dict[str, Any],
) -> None:
    rows = tidy_rows(release)
    assert sorted(r["figure"] for r in rows) == sorted(release["figures"])
    for row in rows:
        value = release["figures"][row["figure"]]
        assert row["value"] == ("" if value is None else value)
        assert (
            row["status"]
            == _expected_status(release, row["figure"])
            == status_of(release, row["figure"])
        )
        assert row["figure_group"] and row["breakdown"]


@given(releases())
@settings(max_examples=30, deadline=None)
def test_csv_is_tidy_and_round_trips(release: dict[str, Any]) -> None:
    parsed = list(csv.DictReader(io.StringIO(csv_text(release))))
    assert list(parsed[0]) == TIDY_COLUMNS
    assert {r["status"] for r in parsed} <= {
        "released", "released-held", "suppressed-primary", "suppressed-secondary", "suppressed"
    }  # fmt: skip
    by_name = {r["figure"]: r for r in parsed}
    assert set(by_name) == set(release["figures"])
    for name, value in release["figures"].items():
        assert by_name[name]["value"] == ("" if value is None else str(value))


@given(releases())
@settings(max_examples=10, deadline=None)
def test_workbook_has_notes_tables_and_every_figure(release: dict[str, Any]) -> None:
    book = load_workbook(io.BytesIO(xlsx_bytes(release, project="fsu")))
    assert book.sheetnames[0] == "Notes" and book.sheetnames[-1] == "All figures"
    notes = [tuple(r) for r in book["Notes"].iter_rows(min_row=2, values_only=True)]
    assert ("Project", "fsu") in notes and ("Run", release["run_id"]) in notes
    assert any(h == "Disclosure policy" and "suppressed" in t for h, t in notes)
    assert any(h == f"Partner: {release['partners'][0]}" for h, _ in notes)
    tidy = list(book["All figures"].iter_rows(min_row=2, values_only=True))
    assert {r[4]: (r[2], r[3]) for r in tidy} == {
        n: (v, _expected_status(release, n)) for n, v in release["figures"].items()
    }
    assert len(book.sheetnames) == len(result_tables(release)) + 2


@given(releases())
@settings(max_examples=40, deadline=None)
def test_ranges_sit_beside_their_figure_and_nothing_lands_in_other(release: dict[str, Any]) -> None:
    tables = {t.key: t for t in result_tables(release)}
    assert "other" not in tables  # every figure the enclave writes has a place
    combos = tables["combinations-persons"]
    for label, cells in combos.rows:
        base = cells[0].figure
        assert base == "persons.only." + label.replace(" + ", "+")
        if f"{base}.low" in release["figures"]:
            assert [c.figure for c in cells] == [base, f"{base}.low", f"{base}.high"]


@given(st.lists(st.integers(0, 200), min_size=1, max_size=30, unique=True))
def test_areas_sort_naturally_and_unknown_goes_last(numbers: list[int]) -> None:
    names = [f"LS{n}" for n in numbers] + ["unknown"]
    ordered = sorted(reversed(names), key=natural_key)
    assert ordered[-1] == "unknown"
    assert [int(n[2:]) for n in ordered[:-1]] == sorted(numbers)


@given(releases())
@settings(max_examples=30, deadline=None)
def test_breakdowns_are_in_natural_order(release: dict[str, Any]) -> None:
    table = next(t for t in result_tables(release) if t.key == "by-area")
    labels = [label for label, _ in table.rows]
    assert labels[-1] == "unknown"
    assert [int(v[2:]) for v in labels[:-1]] == sorted(int(v[2:]) for v in labels[:-1])


def test_footnotes_explain_only_the_marks_in_use() -> None:
    base = {"figures": {"a": None, "b": 5, "c": None}, "policy": {}}
    plain = footnotes(base)
    assert not any(n.startswith("[p]") or n.startswith("[s]") for n in plain)
    assert any("does not record" in n for n in plain)
    marked = footnotes(
        {**base, "suppressed_reason": {"a": "primary", "c": "secondary"}, "held": ["b"]}
    )
    assert [n[:3] for n in marked if n.startswith("[")] == ["[p]", "[s]", "[h]"]
    assert not any("does not record" in n for n in marked)


def test_policy_in_words_reads_as_sentences_not_json() -> None:
    legacy = " ".join(policy_in_words({"style": "nhs", "suppress_below": 8, "round_to": 5,
                                       "min_n_for_mean": 10, "dp": None, "future_rule": {"max_noise": 5}}))  # fmt: skip
    assert "Counts of 1 to 7 are suppressed" in legacy and "nearest 5" in legacy
    assert "Future rule: max noise 5." in legacy
    cell_key = " ".join(policy_in_words({"style": "nhs", "suppress_below": 10, "round_to": 5, "dp": None,
                                         "cell_key": {"epsilon": 0.5, "max_perturbation": 10},
                                         "contacts_bound": 50}))  # fmt: skip
    assert "cell-key noise" in cell_key and "at most 10 either way" in cell_key
    assert (
        "below 10 are then suppressed, zero included" in cell_key and "true zeros" not in cell_key
    )
    dp = " ".join(policy_in_words({"suppress_below": 8, "cell_key": {"epsilon": 0.5},
                                   "dp": {"epsilon_per_release": 0.5, "epsilon_budget": 4.0}}))  # fmt: skip
    assert (
        "differential-privacy noise (epsilon 0.5 per release, 4.0 in all" in dp
        and "cell-key" not in dp
    )
    for text in (legacy, cell_key, dp):
        assert "{" not in text and "}" not in text


def test_notes_name_each_partners_submission_version() -> None:
    release = {"run_id": "r", "partners": ["housing", "police"], "policy": {}, "figures": {}}
    rows = notes_rows(
        release,
        submissions=[{"partner": "housing", "version": 3, "received_at": "2026-10-01T09:00"}],
    )
    assert ("Partner: housing", "submission version 3, received 2026-10-01") in rows


def test_two_way_tables_from_an_enclave_release(spec: Any) -> None:
    release = enclave_release(spec)
    tables = {t.key: t for t in result_tables(release)}
    for cohort in ("persons", "multi", "frequent"):
        table = tables[f"cross-age_band-need-{cohort}"]
        needs = [*sorted(spec.attributes[3].values), "unknown"]
        assert table.header == ["age band", *needs, "all"]
        labels = [label for label, _ in table.rows]
        assert labels[0] == "0-17" and labels[-2:] == ["unknown", "all"]
        # margins are the one-way figures; the corner is the cohort's total
        assert table.rows[0][1][-1].figure == f"{cohort}.by.age_band.0-17.count"
        assert table.rows[-1][1][0].figure == f"{cohort}.by.need.{needs[0]}.count"
        total = "multi.total" if cohort == "multi" else f"{cohort}.total"
        assert table.rows[-1][1][-1].figure == total
        # LS10 (about 6 people) is named by the data only, not the spec: its figures are
        # left out unless its noisy count clears suppression (linkage.disclose, names)
        assert [label for label, _ in tables[f"cross-area-need-{cohort}"].rows] == [
            "LS1", "LS2", "unknown", "all"]  # fmt: skip
    cells = [c for t in tables.values() if t.key.startswith("cross-") for _, r in t.rows for c in r]
    statuses = {c.status for c in cells}
    # (secondary suppression inside two-way tables: tests/linkage/test_disclose.py)
    assert {"released", "suppressed-primary"} <= statuses
    for cell in cells:
        if cell.value is None:
            assert cell.text == f"* [{cell.status[11]}]"  # [p] or [s], never a bare *
    tidy = {r["figure"]: r for r in tidy_rows(release)}
    assert tidy["persons.cross.age_band.85+.need.offending.count"]["status"].startswith(
        "suppressed-"
    )
    book = load_workbook(io.BytesIO(xlsx_bytes(release)))
    sheet = book["cross-age_band-need-persons"]
    lines = [r[0] for r in sheet.iter_rows(values_only=True) if r and r[0]]
    assert any(str(x).startswith("Note: suppressed-primary") for x in lines)
    assert sheet["B2"].value == "domestic_abuse" and sheet["C2"].value == "status"


def test_a_sector_breakdown_sorts_naturally_and_charts(spec: Any) -> None:
    from linkage.spec import parse_spec
    from service.results import chart, render

    data = spec.model_dump(mode="json", exclude_none=True)
    data["attributes"].append({"name": "sector", "kind": "area", "source": "postcode",
                               "level": "sector"})  # fmt: skip
    sectors = ["LS1 10", "LS1 2", "LS1 1", "LS10 1", "LS2 7"]
    release = enclave_release(parse_spec(data), people=600, sectors=sectors)
    tables = {t.key: t for t in result_tables(release)}
    labels = [label for label, _ in tables["by-sector"].rows]
    assert labels == ["LS1 1", "LS1 2", "LS1 10", "LS2 7", "LS10 1", "unknown"]
    assert not any(k.startswith("cross-sector") for k in tables)
    cells = [c for _, row in tables["by-sector"].rows for c in row if c.figure.endswith(".count")]
    assert any(c.value is not None for c in cells)  # enough people: released
    assert all(c.status.startswith("suppressed-") for c in cells if c.value is None)
    svg = render(chart(release, "by-sector-persons"), "svg").decode()
    assert "Everyone by sector" in svg and "LS10 1" in svg
