"""The analyst's and the DPO's web in real headless Chromium (Debian's package, driven
by Playwright), on the demo's data: sign in, open a run, see the charts, download the
workbook and the CSV and check them with openpyxl; /docs and /redoc render under the
service's strict CSP; the DPO timeline with a release event stays short; axe-core finds
no serious or critical accessibility violation. Screenshots are checked non-blank and
kept under tests/artifacts (and, with PPRL_WRITE_DOCS_IMAGES=1, refresh docs/)."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from openpyxl import load_workbook

from service.results import policy_in_words

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
AXE = Path(__file__).parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = ROOT / "tests" / "artifacts"
pytestmark = [pytest.mark.browser, pytest.mark.slow]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The demo's flow (synthetic partners, one finished run) with its server left running."""
    from service.demo import run_demo
    from tests.live_server import free_port

    result = run_demo(tmp_path_factory.mktemp("demo") / "d", people=2500, port=free_port(),
                      say=lambda _m: None, keep_serving=True)  # fmt: skip
    assert result.server is not None
    try:
        yield result
    finally:
        result.server.terminate()
        result.server.wait(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed (make test installs it)")
    if not AXE.exists():
        pytest.fail(f"{AXE} missing: run `npm ci` in tests/browser/axe (make test does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


def _shot(page: Any, name: str, *, full_page: bool = False, docs: str | None = None) -> Path:
    """Save a screenshot under tests/artifacts (and docs/ on request); check it is not blank."""
    import matplotlib.image as mpimg

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    pixels = np.asarray(mpimg.imread(path))
    assert pixels.shape[0] > 200 and pixels.std() > 0.05, f"{name} looks blank"
    if docs and os.environ.get("PPRL_WRITE_DOCS_IMAGES") == "1":
        shutil.copy(path, ROOT / "docs" / docs)
    return path


def _axe(page: Any, where: str) -> None:
    """Run axe-core in the page; fail on any serious or critical violation."""
    page.evaluate(
        AXE.read_text() + "\n;0"
    )  # evaluated over the protocol: the page's CSP allows no inline script
    results = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    bad = [(v["id"], v["impact"], len(v["nodes"])) for v in results["violations"]
           if v["impact"] in ("serious", "critical")]  # fmt: skip
    assert not bad, f"{where}: {bad}"


def _sign_in(page: Any, url: str, area: str, token: str) -> None:
    page.goto(f"{url}/{area}")
    assert page.url.endswith(f"/{area}/login")
    page.fill("#token", token)
    page.click("#sign-in")
    page.wait_for_url(f"{url}/{area}")


def _until(page: Any, predicate: str, timeout: float = 30.0) -> None:
    """Poll ``predicate`` (page.wait_for_function would eval a string, which the CSP forbids)."""
    import time

    deadline = time.monotonic() + timeout
    while not page.evaluate(predicate):
        assert time.monotonic() < deadline, f"timed out waiting for {predicate}"
        page.wait_for_timeout(200)


def _csp_errors(page: Any) -> list[str]:
    errors: list[str] = []
    page.on(
        "console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None
    )
    return errors


def test_analyst_opens_a_run_sees_charts_and_downloads_tables(
    demo: Any, browser: Any, tmp_path: Path
) -> None:
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900},
                                  accept_downloads=True)  # fmt: skip
    page = context.new_page()
    csp = _csp_errors(page)
    _sign_in(page, demo.url, "analyst", demo.tokens["analyst"])
    _axe(page, "analyst projects")
    page.click("#projects a >> nth=0")
    page.wait_for_selector("#runs")
    page.click("#runs a >> nth=0")
    page.wait_for_selector("#run-title")
    run_id = page.inner_text("#run-id")
    assert run_id == demo.released["run_id"]
    # every chart image loaded: lazy images load only near the viewport, and scrolling to
    # the bottom skips the middle of a long page, so ask for all of them now
    page.evaluate("document.querySelectorAll('img[loading=lazy]').forEach(i => i.loading = 'eager')")
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    try:
        _until(page, "() => [...document.images].every(i => i.complete && i.naturalWidth > 0)", 90)
    except AssertionError:
        missing = page.evaluate(
            "() => [...document.images].filter(i => !(i.complete && i.naturalWidth > 0))"
            ".map(i => i.getAttribute('src'))"
        )
        raise AssertionError(f"chart images not loaded: {missing}") from None
    widths = page.eval_on_selector_all("figure.chart img", "els => els.map(e => e.naturalWidth)")
    assert len(widths) >= 8 and min(widths) > 400
    page.evaluate("window.scrollTo(0, 0)")
    body = page.inner_text("main")
    total = demo.released["figures"]["persons.total"]
    assert f"{total:,}" in body and policy_in_words(demo.released["policy"])[0] in body
    assert "suppressed" in page.inner_text("#footnotes")
    areas = page.eval_on_selector_all(
        "#table-by-area tbody th", "els => els.map(e => e.textContent)"
    )
    numbers = [int(a[2:]) for a in areas if a.startswith("LS")]
    assert numbers == sorted(numbers) and areas[-1] == "unknown"  # LS2 before LS10
    _shot(page, "analyst-run", docs="analyst-run.png")
    _axe(page, "analyst run page")

    with page.expect_download() as info:
        page.click("#download-xlsx")
    xlsx = tmp_path / "results.xlsx"
    info.value.save_as(xlsx)
    book = load_workbook(xlsx)
    notes = dict(book["Notes"].iter_rows(min_row=2, max_col=2, values_only=True))
    assert notes["Project"] == "frequent-users" and notes["Run"] == run_id
    tidy = {r[4]: r[2] for r in book["All figures"].iter_rows(min_row=2, values_only=True)}
    assert tidy == demo.released["figures"]
    with page.expect_download() as info:
        page.click("#download-csv")
    rows = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text())))
    assert {r["figure"] for r in rows} == set(demo.released["figures"])
    assert {r["status"] for r in rows} <= {
        "released",
        "suppressed-primary",
        "suppressed-secondary",
        "suppressed",
    }
    chart = page.request.get(
        f"{demo.url}/analyst/projects/{demo.released['project_id']}/runs/{run_id}/charts/upset-persons.png"
    )
    assert chart.ok
    (ARTIFACTS / "chart-upset.png").write_bytes(chart.body())
    if os.environ.get("PPRL_WRITE_DOCS_IMAGES") == "1":
        (ROOT / "docs" / "chart-upset.png").write_bytes(chart.body())
    assert not csp, csp
    context.close()


def test_docs_and_redoc_render_under_the_services_csp(demo: Any, browser: Any) -> None:
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    csp = _csp_errors(page)
    page.goto(f"{demo.url}/docs")
    page.wait_for_selector(".opblock", timeout=20_000)
    assert page.locator(".opblock").count() >= 10
    assert "/v1/projects" in page.inner_text("#swagger-ui")
    _shot(page, "docs")
    page.goto(f"{demo.url}/redoc")
    page.locator("#redoc").get_by_text("/v1/projects").first.wait_for(timeout=20_000)
    _shot(page, "redoc")
    page.goto(demo.url + "/")
    hrefs = page.eval_on_selector_all("a", "els => els.map(e => e.getAttribute('href'))")
    assert {"/analyst", "/dpo", "/docs"} <= set(hrefs)
    assert not [e for e in csp if "script" in e], csp
    context.close()


def test_dpo_timeline_with_a_release_is_short_and_readable(demo: Any, browser: Any) -> None:
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    _sign_in(page, demo.url, "dpo", demo.dpo_token)
    status = page.locator("#chain-status")
    assert "verified up to event" in status.inner_text()
    colour = status.evaluate("e => getComputedStyle(e).backgroundColor")
    if "warn" in (status.get_attribute("class") or ""):
        assert colour == "rgb(254, 235, 200)"  # amber while the tail is unsigned, never green
    release = page.locator("#events tr", has_text="results.released").first
    assert "figures released" in release.inner_text() and "[" not in release.inner_text()
    assert not release.locator("details").evaluate("d => d.open")  # the full list is one click away
    _shot(page, "dpo-timeline", full_page=True)
    height = page.evaluate("document.documentElement.scrollHeight")
    assert height < 2000, height
    logout = page.locator("#logout")
    fg, bg = logout.evaluate(
        "b => [getComputedStyle(b).color, getComputedStyle(b).backgroundColor]"
    )
    assert fg != bg and bg == "rgb(255, 255, 255)"
    _axe(page, "DPO timeline")
    page.click("a[href^='/dpo/projects/']")
    page.wait_for_selector("#project-name")
    assert "nhs number" in page.inner_text("#spec-identifiers").replace("_", " ").lower()
    assert "suppressed" in page.inner_text("#policy") and "{" not in page.inner_text("#policy")
    assert "due 20" in page.inner_text("#submissions")
    run_cell = page.locator("#runs tr[id^='run-']").first
    assert " v1" in run_cell.inner_text()  # the submission versions the run linked
    _shot(page, "dpo-project", full_page=True)
    _axe(page, "DPO project page")
    context.close()


def test_cli_lists_runs_and_writes_the_workbook(demo: Any, tmp_path: Path) -> None:
    env = {**os.environ, "PPRL_URL": demo.url, "PPRL_TOKEN": demo.tokens["analyst"],
           "PPRL_CA_BUNDLE": str(Path(demo.chart).parent / "tls" / "ca.pem")}  # fmt: skip
    listed = subprocess.run([sys.executable, "-m", "service.cli", "runs", "list", "--project", "frequent-users",
                             "--json"], env=env, capture_output=True, text=True, check=True)  # fmt: skip
    runs = json.loads(listed.stdout)["runs"]
    assert [r["id"] for r in runs if r["status"] == "done"] == [demo.released["run_id"]]
    out = tmp_path / "r.xlsx"
    subprocess.run([sys.executable, "-m", "service.cli", "results", "--project", "frequent-users", "--format",
                    "xlsx", "--output", str(out), "--plot", str(tmp_path / "h.svg"), "--chart", "heatmap-persons"],
                   env=env, capture_output=True, text=True, check=True)  # fmt: skip
    assert load_workbook(out)["Notes"]["B2"].value == "frequent-users"
    assert "known to both partners" in (tmp_path / "h.svg").read_text()


def _submit_for_period(demo: Any, partner: str, period: str) -> dict[str, Any]:
    """`pprl submit --period` as the demo's partner did, into ``period``."""
    root = Path(demo.chart).parent
    env = {**os.environ, "PPRL_URL": demo.url, "PPRL_TOKEN": demo.tokens[partner],
           "PPRL_CA_BUNDLE": str(root / "tls" / "ca.pem"),
           "PPRL_CONFIG_DIR": str(root / "partners" / f".{partner}-config")}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "service.cli", "submit", "--project", "frequent-users",
                           str(root / "partners" / f"{partner}.hashed.parquet"), "--period", period,
                           "--wait", "--json"], env=env, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_analyst_sees_two_way_tables_and_compares_two_periods(demo: Any, browser: Any) -> None:
    """Runs last in this module: it adds periods and runs to the demo's project."""
    from service.client import Client
    from service.settings import ClientSettings

    partners = sorted(p for p, t in demo.tokens.items() if p not in ("analyst", "dpo"))
    for period, who in (("2026-Q1", partners), ("2026-Q2", partners[:-1])):  # one partner fewer
        for partner in who:
            receipt = _submit_for_period(demo, partner, period)
            assert receipt["status"] == "accepted" and receipt["period"] == period
    ca = Path(demo.chart).parent / "tls" / "ca.pem"
    analyst = Client(ClientSettings(url=demo.url, token=demo.tokens["analyst"], ca_bundle=ca))
    for period in ("2026-Q1", "2026-Q2"):
        run = analyst.request("POST", "/v1/projects/frequent-users/runs", json={"period": period})
        _poll_run(analyst, run)
    analyst.close()
    env = {**os.environ, "PPRL_URL": demo.url, "PPRL_TOKEN": demo.tokens["analyst"],
           "PPRL_CA_BUNDLE": str(ca)}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "service.cli", "results", "--project", "frequent-users",
                           "--period", "2026-Q2", "--compare", "2026-Q1", "--json"],
                          env=env, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    compared = json.loads(done.stdout)
    assert (compared["before_period"], compared["after_period"]) == ("2026-Q1", "2026-Q2")
    for change in compared["changes"]:
        if change["before"] is None or change["after"] is None:
            assert change["change"] is None
        else:
            assert change["change"] == round(change["after"] - change["before"], 1)

    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    csp = _csp_errors(page)
    _sign_in(page, demo.url, "analyst", demo.tokens["analyst"])
    page.click("#projects a >> nth=0")
    page.wait_for_selector("#compare-periods-form")
    # the newest run (2026-Q2) first: its two-way tables, with marked suppressed cells
    page.click("#runs a >> nth=0")
    page.wait_for_selector("#run-title")
    assert page.inner_text("#run-period") == "2026-Q2"
    table = page.locator("#table-cross-age_band-need-persons")
    assert "age band by need" in table.locator("caption").inner_text()
    header = table.locator("thead th").all_inner_texts()
    assert header[0] == "age band" and header[-1] == "all" and "housing" in header
    assert table.locator("tbody tr").count() >= 5
    marked = page.locator("td.suppressed-primary, td.suppressed-secondary")
    assert marked.count() > 0 and "[p] primary suppression" in page.inner_text("#footnotes")
    assert "Withheld by the disclosure rules" in page.inner_text("#diagnostics-withheld")
    table.scroll_into_view_if_needed()
    _shot(page, "analyst-two-way")
    _axe(page, "analyst run page with two-way tables")
    page.go_back()
    page.wait_for_selector("#compare-periods-form")
    page.select_option("#before_period", "2026-Q1")
    page.select_option("#after_period", "2026-Q2")
    page.click("#compare-periods")
    page.wait_for_selector("#compare-title")
    runs = page.inner_text("#compare-runs")
    assert "period 2026-Q1" in runs and "period 2026-Q2" in runs
    changes = page.eval_on_selector_all(
        "table.compare tbody tr",
        "rows => rows.map(r => [...r.querySelectorAll('td')].map(c => c.textContent))",
    )
    assert len(changes) > 30
    for before, after, change in changes:
        if "*" in (before, after):
            assert change == "*"  # a change involving a suppressed figure is suppressed
    assert any(c.startswith("-") for _, _, c in changes)  # a partner fewer in Q2
    _shot(page, "analyst-compare-periods")
    _axe(page, "analyst period comparison")
    assert not csp, csp
    context.close()


def _poll_run(client: Any, run: dict[str, Any]) -> None:
    import time

    deadline = time.monotonic() + 300
    while run["status"] not in ("done", "failed"):
        assert time.monotonic() < deadline, "run did not finish"
        time.sleep(0.5)
        run = client.request("GET", f"/v1/projects/frequent-users/runs/{run['id']}")
    assert run["status"] == "done", run["message"]
