"""The analyst's pages in process, on SQLite and PostgreSQL: sign-in with the shared
server-side sessions, projects and runs of members only, a run's tables, charts and
downloads (CSV, xlsx) matching the release, every release audited."""

from __future__ import annotations

import csv
import io
import re
from html import unescape
from pathlib import Path

from openpyxl import load_workbook

from service.results import policy_in_words
from service.worker.loop import Worker
from tests.service_fixtures import Service


def _csrf(s: Service, path: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', s.http.get(path).text)
    assert match, f"no CSRF field on {path}"
    return match.group(1)


def sign_in_analyst(s: Service, token: str) -> int:
    r = s.http.post("/analyst/login", data={"token": token, "csrf": _csrf(s, "/analyst/login")},
                    follow_redirects=False)  # fmt: skip
    return r.status_code


def _finished_run(s: Service, extracts: dict[str, Path]) -> str:
    for partner in ("housing", "police"):
        assert s.upload(s.tokens[partner], extracts[partner].read_bytes()).status_code in (201, 202)
    r = s.http.post(
        f"/v1/projects/{s.project_id}/runs", headers=s.as_(s.tokens["analyst"]), json={}
    )
    assert r.status_code == 202, r.text
    assert Worker(s.settings).run_once() == r.json()["id"]
    return str(r.json()["id"])


def test_only_analyst_tokens_sign_in_and_sessions_do_not_cross_areas(
    project_service: Service,
) -> None:
    s = project_service
    assert s.http.get("/analyst", follow_redirects=False).headers["location"] == "/analyst/login"
    for wrong in ("pprl_not-a-token", s.tokens["dpo"], s.tokens["housing"]):
        assert sign_in_analyst(s, wrong) == 200  # the form again, with the error
        assert "/analyst/login" in s.http.get("/analyst").url.path
    assert sign_in_analyst(s, s.tokens["analyst"]) == 303
    page = s.http.get("/analyst")
    assert page.status_code == 200 and "frequent-users" in page.text
    # the analyst's session is no DPO session
    assert s.http.get("/dpo", follow_redirects=False).status_code == 303
    # sign-out needs the CSRF token, then ends the session on the server
    assert s.http.post("/analyst/logout", data={"csrf": "forged"}).status_code == 403
    cookie = s.http.cookies.get("pprl_analyst")
    assert cookie
    s.http.post("/analyst/logout", data={"csrf": _csrf(s, "/analyst")}, follow_redirects=False)
    s.http.cookies.set("pprl_analyst", cookie, path="/analyst")  # a replayed cookie
    assert s.http.get("/analyst", follow_redirects=False).status_code == 303
    actions = s.audit_actions()
    assert ("analyst.sign_in", "ok") in actions and ("analyst.sign_in", "denied") in actions
    assert ("analyst.sign_out", "ok") in actions


def test_run_page_charts_and_downloads_match_the_release(
    project_service: Service, hashed_extracts: dict[str, Path]
) -> None:
    s = project_service
    other = s.project(name="other-project", members=["housing"])
    run_id = _finished_run(s, hashed_extracts)
    released = s.http.get(f"/v1/projects/{s.project_id}/runs/{run_id}/results",
                          headers=s.as_(s.tokens["analyst"])).json()  # fmt: skip
    assert sign_in_analyst(s, s.tokens["analyst"]) == 303
    home = s.http.get("/analyst").text
    assert "other-project" not in home
    assert s.http.get(f"/analyst/projects/{other}").status_code == 404
    project = s.http.get(f"/analyst/projects/{s.project_id}").text
    base = f"/analyst/projects/{s.project_id}/runs/{run_id}"
    assert f'href="{base}"' in project
    before = s.audit_actions().count(("results.read", "ok"))
    page = s.http.get(base)
    assert page.status_code == 200
    assert s.audit_actions().count(("results.read", "ok")) == before + 1
    html = page.text
    total = released["figures"]["persons.total"]
    assert f"{total:,}" in html
    for line in policy_in_words(released["policy"]):
        assert line in unescape(html)
    assert "{" not in re.sub(r"<[^>]+>", "", html)  # no raw JSON
    images = re.findall(r'<img src="([^"]+\.png)"', html)
    assert any("upset-persons" in i for i in images) and any("heatmap-persons" in i for i in images)
    for image in images[:3]:
        got = s.http.get(image)
        assert got.status_code == 200 and got.content[:8] == b"\x89PNG\r\n\x1a\n"
    svg = s.http.get(f"{base}/charts/upset-persons.svg")
    assert (
        svg.headers["content-type"].startswith("image/svg+xml")
        and b"known to exactly" in svg.content
    )
    assert s.http.get(f"{base}/charts/no-such-chart.png").status_code == 404
    assert s.http.get(f"{base}/charts/upset-persons.gif").status_code == 404
    # chart images do not add a read per image once the page was read
    assert s.audit_actions().count(("results.read", "ok")) == before + 1

    rows = list(csv.DictReader(io.StringIO(s.http.get(f"{base}/results.csv").text)))
    assert {r["figure"] for r in rows} == set(released["figures"])
    for row in rows:
        value = released["figures"][row["figure"]]
        assert row["value"] == ("" if value is None else str(value))
        assert (row["status"] == "released") == (
            value is not None and row["figure"] not in released.get("held", [])
        )
    book = load_workbook(io.BytesIO(s.http.get(f"{base}/results.xlsx").content))
    notes = dict(book["Notes"].iter_rows(min_row=2, max_col=2, values_only=True))
    assert notes["Project"] == "frequent-users" and notes["Run"] == run_id
    assert notes["Partner: housing"].startswith("submission version 1")
    tidy = {r[4]: r[2] for r in book["All figures"].iter_rows(min_row=2, values_only=True)}
    assert tidy == released["figures"]
    assert s.audit_actions().count(("results.read", "ok")) == before + 3


def test_a_run_of_another_project_or_unfinished_is_not_shown(project_service: Service) -> None:
    s = project_service
    run = s.http.post(
        f"/v1/projects/{s.project_id}/runs", headers=s.as_(s.tokens["analyst"]), json={}
    )
    run_id = run.json()["id"]
    assert sign_in_analyst(s, s.tokens["analyst"]) == 303
    page = s.http.get(f"/analyst/projects/{s.project_id}/runs/{run_id}")
    assert page.status_code == 200 and "results exist only for finished runs" in page.text
    assert s.http.get(f"/analyst/projects/{s.project_id}/runs/nope").status_code == 404
    other = s.project(name="not-mine", members=["housing"])
    assert s.http.get(f"/analyst/projects/{other}/runs/{run_id}").status_code == 404
    assert (
        s.http.get(f"/analyst/projects/{s.project_id}/runs/{run_id}/results.csv").status_code == 409
    )


def test_comparing_two_runs_of_the_same_data_shows_no_change(
    project_service: Service, hashed_extracts: dict[str, Path]
) -> None:
    s = project_service
    first = _finished_run(s, hashed_extracts)
    r = s.http.post(
        f"/v1/projects/{s.project_id}/runs", headers=s.as_(s.tokens["analyst"]), json={}
    )
    assert r.status_code == 202, r.text
    assert Worker(s.settings).run_once() == r.json()["id"]
    second = r.json()["id"]
    assert sign_in_analyst(s, s.tokens["analyst"]) == 303
    assert 'id="compare-form"' in s.http.get(f"/analyst/projects/{s.project_id}").text
    before = s.audit_actions().count(("results.read", "ok"))
    page = s.http.get(
        f"/analyst/projects/{s.project_id}/compare", params={"before": first, "after": second}
    )
    assert page.status_code == 200
    assert s.audit_actions().count(("results.read", "ok")) == before + 2
    changes = re.findall(r'<td class="num( suppressed)?">([^<]*)</td></tr>', page.text)
    assert changes and {text for _, text in changes} - {"*", "+0 ~", "+0.0"} == set(), {
        t for _, t in changes
    }  # same noise
    assert any(text == "+0 ~" for _, text in changes)
    missing = s.http.get(
        f"/analyst/projects/{s.project_id}/compare", params={"before": first, "after": "nope"}
    )
    assert missing.status_code == 404


def _squares(areas: list[str]) -> dict[str, object]:
    """A small boundaries file: one unit square per area in a row (what the tests make)."""
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"area": a},
         "geometry": {"type": "Polygon", "coordinates": [[[i, 0], [i + 1, 0], [i + 1, 1], [i, 1], [i, 0]]]}}
        for i, a in enumerate(areas)]}  # fmt: skip


def test_area_map_from_the_operators_boundaries_file(
    project_service: Service, hashed_extracts: dict[str, Path], tmp_path: Path
) -> None:
    import json

    s = project_service
    run_id = _finished_run(s, hashed_extracts)
    assert sign_in_analyst(s, s.tokens["analyst"]) == 303
    base = f"/analyst/projects/{s.project_id}/runs/{run_id}"
    assert "map-area-persons" not in s.http.get(base).text  # no boundaries configured: no map
    released = s.http.get(f"/v1/projects/{s.project_id}/runs/{run_id}/results",
                          headers=s.as_(s.tokens["analyst"])).json()  # fmt: skip
    prefix = "persons.by.area."
    areas = sorted(
        {n[len(prefix) :].rsplit(".", 1)[0] for n in released["figures"] if n.startswith(prefix)}
    )
    boundaries = tmp_path / "districts.geojson"
    boundaries.write_text(json.dumps(_squares([*areas, "ZZ99"])))
    s.settings.boundaries = boundaries
    assert f"{base}/charts/map-area-persons.png" in s.http.get(base).text
    png = s.http.get(f"{base}/charts/map-area-persons.png")
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    svg = s.http.get(f"{base}/charts/map-area-frequent.svg").text
    assert "Frequent users by area" in svg and "ZZ99" in svg
    boundaries.write_text("{not json")
    assert s.http.get(f"{base}/charts/map-area-persons.svg").status_code in (
        200,
        404,
    )  # cached or refused, never 500


def _later_extract(extracts: dict[str, Path], tmp_path: Path, partner: str, keep: int) -> bytes:
    """The partner's next extract: its first ``keep`` people, hashed under the same secret."""
    from pyarrow import csv as pacsv

    from linkage.encode import hash_file
    from linkage.spec import load_spec
    from tests.conftest import EXAMPLE_SPEC

    source = tmp_path / f"{partner}-later.csv"
    table = pacsv.read_csv(extracts[f"{partner}.csv"])
    pacsv.write_csv(table.slice(0, keep), source)
    out = tmp_path / f"{partner}-later.parquet"
    hash_file(load_spec(EXAMPLE_SPEC), extracts["secret"].read_bytes(), source, out)
    return out.read_bytes()


def _period_run(s: Service, period: str | None) -> dict[str, object]:
    body = {"period": period} if period else {}
    r = s.http.post(
        f"/v1/projects/{s.project_id}/runs", headers=s.as_(s.tokens["analyst"]), json=body
    )
    assert r.status_code == 202, r.text
    assert r.json()["period"] == period and r.json()["params"].get("period") == period
    assert Worker(s.settings).run_once() == r.json()["id"]
    state = s.http.get(f"/v1/projects/{s.project_id}/runs/{r.json()['id']}",
                       headers=s.as_(s.tokens["analyst"])).json()  # fmt: skip
    return dict(state)


def test_periods_are_linked_apart_and_compared_from_released_figures_only(
    project_service: Service, hashed_extracts: dict[str, Path], tmp_path: Path
) -> None:
    s = project_service
    analyst = s.as_(s.tokens["analyst"])
    # bad labels are refused at the edge, in one sentence naming the period
    bad = s.upload(s.tokens["housing"], hashed_extracts["housing"].read_bytes(), period="Q1 2026!")
    assert bad.status_code in (400, 409, 422) and "period 'Q1 2026!'" in bad.text
    r = s.http.post(f"/v1/projects/{s.project_id}/runs", headers=analyst, json={"period": "x y"})
    assert r.status_code == 422 and "period 'x y'" in r.text

    for partner in ("housing", "police"):
        up = s.upload(s.tokens[partner], hashed_extracts[partner].read_bytes(), period="2026-Q1")
        assert up.status_code == 202 and up.json()["period"] == "2026-Q1", up.text
    s.judge()
    first = _period_run(s, "2026-Q1")
    assert first["status"] == "done", first
    # the next quarter: the same housing file (not a duplicate: another period) and a
    # smaller police extract
    up = s.upload(s.tokens["housing"], hashed_extracts["housing"].read_bytes(), period="2026-Q2")
    assert up.status_code == 202, up.text
    later = _later_extract(hashed_extracts, tmp_path, "police", 60)
    assert s.upload(s.tokens["police"], later, period="2026-Q2").status_code == 202
    s.judge()
    second = _period_run(s, "2026-Q2")
    assert second["status"] == "done", second
    # Q2's uploads leave Q1's standing (nor will retention purge them as superseded)
    listed = s.http.get(f"/v1/projects/{s.project_id}/submissions", headers=s.as_(s.admin)).json()
    standing = {(x["period"], x["partner"]) for x in listed if x["current"]}
    assert standing == {(p, q) for p in ("2026-Q1", "2026-Q2") for q in ("housing", "police")}
    # Q1 is still linkable after Q2 arrived, and from Q1's submissions alone
    again = _period_run(s, "2026-Q1")
    results = {
        run["id"]: s.http.get(f"/v1/projects/{s.project_id}/runs/{run['id']}/results",
                              headers=analyst).json()
        for run in (first, second, again)
    }  # fmt: skip
    q1, q2, q1_again = (results[str(r["id"])] for r in (first, second, again))
    assert (q1["period"], q2["period"]) == ("2026-Q1", "2026-Q2")
    assert q1_again["figures"] == q1["figures"]  # same inputs, same noise
    assert q2["figures"]["persons.partner.police"] < q1["figures"]["persons.partner.police"]
    # the default period has no submissions now: a run without a period says so
    default = _period_run(s, None)
    assert default["status"] == "failed" and "no current submissions" in str(default["message"])

    assert sign_in_analyst(s, s.tokens["analyst"]) == 303
    project = s.http.get(f"/analyst/projects/{s.project_id}").text
    assert 'id="compare-periods-form"' in project and ">2026-Q2</td>" in project
    page = s.http.get(f"/analyst/projects/{s.project_id}/compare",
                      params={"before_period": "2026-Q1", "after_period": "2026-Q2"})  # fmt: skip
    assert page.status_code == 200, page.text
    html = page.text
    assert "period <strong>2026-Q1</strong>" in html and "period <strong>2026-Q2</strong>" in html
    # every row: before, after and change; the change is the difference of the two
    # released figures, and suppressed whenever either side is
    rows = re.findall(r'<td class="num">([^<]*)</td>\s*<td class="num">([^<]*)</td>\s*'
                      r'<td class="num( suppressed)?">([^<]*)</td>', html)  # fmt: skip
    assert len(rows) > 50
    for before, after, _, change in rows:
        if "*" in (before, after):
            assert change == "*"
        else:
            diff = float(after.replace(",", "")) - float(before.replace(",", ""))
            assert float(change.split()[0].replace(",", "")) == round(diff, 1)
    assert any(change.startswith("-") for _, _, _, change in rows)
    missing = s.http.get(f"/analyst/projects/{s.project_id}/compare",
                         params={"before_period": "2026-Q1", "after_period": "2027-Q1"})  # fmt: skip
    assert missing.status_code == 404
    run_page = s.http.get(f"/analyst/projects/{s.project_id}/runs/{second['id']}").text
    assert '<dd id="run-period">2026-Q2</dd>' in run_page


def test_a_projects_period_scheme_is_enforced(
    project_service: Service, hashed_extracts: dict[str, Path]
) -> None:
    s = project_service
    s.project_id = s.project(name="quarterly", members=["housing", "analyst"],
                             period_scheme="quarterly")  # fmt: skip
    shown = s.http.get(f"/v1/projects/{s.project_id}", headers=s.as_(s.admin)).json()
    assert shown["period_scheme"] == "quarterly"
    bad = s.upload(s.tokens["housing"], hashed_extracts["housing"].read_bytes(), period="2026-13")
    assert bad.status_code in (400, 409, 422)
    assert "is not a year and quarter such as 2026-Q1" in bad.text
    r = s.http.post(f"/v1/projects/{s.project_id}/runs", headers=s.as_(s.tokens["analyst"]),
                    json={"period": "2026-Q5"})  # fmt: skip
    assert r.status_code == 422 and "quarterly" in r.text
    ok = s.upload(s.tokens["housing"], hashed_extracts["housing"].read_bytes(), period="2026-Q3")
    assert ok.status_code == 202 and ok.json()["period"] == "2026-Q3"


def test_run_page_says_why_model_diagnostics_are_withheld(
    project_service: Service, hashed_extracts: dict[str, Path]
) -> None:
    s = project_service
    run_id = _finished_run(s, hashed_extracts)
    assert sign_in_analyst(s, s.tokens["analyst"]) == 303
    html = unescape(s.http.get(f"/analyst/projects/{s.project_id}/runs/{run_id}").text)
    assert 'id="diagnostics-withheld"' in html
    assert "Withheld by the disclosure rules: the m and u probabilities" in html
    assert 'class="diagnostic"' not in html  # no empty m/u table or chart
    assert 'id="table-cross-age_band-need-persons"' in html
    assert 'id="table-cross-area-need-frequent"' in html
