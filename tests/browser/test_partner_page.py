"""The partner page in Debian's Chromium: a messy CSV is checked, hashed and sealed in the
browser and uploaded; the enclave accepts it; what it sealed is exactly what `pprl hash` +
`pprl submit` seal from the same rows; no request carries a plaintext value. The
self-contained page works from file:// for everything but the upload."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from sqlalchemy import select

from linkage.encode import new_secret, write_secret
from linkage.synthetic import generate_partners
from service.crypto import load_enclave_private_key
from service.db import Database
from service.db.models import Submission
from service.settings import Settings
from service.tlscert import make_local_tls
from service.worker.opening import open_accepted
from tests.conftest import EXAMPLE_SPEC
from tests.live_server import free_port, start_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
STATIC = Path(__file__).resolve().parents[2] / "service" / "partner" / "static"
pytestmark = pytest.mark.browser
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def _cli(env: dict[str, str], *args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "service.cli", *args, "--json"], env=env,
                         capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def _messy_csv(path: Path) -> list[dict[str, str | None]]:
    """An Excel-style export: BOM, semicolons, spaced capitalised headers, 3.0 counts, a total row."""
    rows = generate_partners(400, seed=5)["housing"].drop(["person_id"]).to_pylist()
    header = {"nhs_number": "NHS Number", "forename": "Forename", "surname": "SURNAME",
              "date_of_birth": "Date of Birth", "sex": "Sex", "postcode": "Post Code",
              "contacts": "Contacts", "service_need": "Service Need"}  # fmt: skip
    lines = [";".join(header[k] for k in header)]
    for row in rows:
        cells = [row.get(k) or "" for k in header]
        cells[6] = f"{cells[6]}.0" if cells[6] else ""
        lines.append(";".join(c.replace(";", " ") for c in cells))
    lines.append(";".join(["Total", "", "", "", "", "", "999", ""]))
    path.write_bytes(b"\xef\xbb\xbf" + ("\r\n".join(lines) + "\r\n").encode("utf-8"))
    return rows


def _opened(settings: Settings, project_id: str) -> dict[str, pa.Table]:
    db = Database(settings.url)
    key = load_enclave_private_key(settings.enclave_private_key_path)
    out = {}
    with db.transaction() as session:
        for sub in session.execute(select(Submission).where(Submission.status == "accepted")).scalars():
            out[sub.envelope_json and json.loads(sub.envelope_json)["tool_version"]] = open_accepted(
                settings.data_dir / sub.blob_path, key, project_id, sub.policy_fingerprint, "housing")
    db.dispose()
    return out


def _wait_accepted(env: dict[str, str], project: str, count: int) -> None:
    for _ in range(120):
        settings = Settings(data_dir=Path(env["PPRL_DATA_DIR"]))
        db = Database(settings.url)
        with db.transaction() as session:
            done = session.execute(select(Submission).where(Submission.status != "received")).scalars().all()
        db.dispose()
        if len(done) >= count:
            assert all(s.status == "accepted" for s in done), [(s.status, s.reason) for s in done]
            return
        time.sleep(0.5)
    raise AssertionError("the enclave did not judge the submissions")


def test_partner_page_hashes_seals_and_uploads_only_the_sealed_file(tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed (make test installs it)")
    if not (STATIC / "partner.js").exists():
        pytest.fail("the partner page is not built (make web builds it)")
    from playwright.sync_api import sync_playwright

    tls = make_local_tls(tmp_path / "tls")
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    env = {**os.environ, "PPRL_DATA_DIR": str(tmp_path / "data"), "PPRL_URL": url,
           "PPRL_CA_BUNDLE": str(tls.ca_cert)}  # fmt: skip
    env.pop("PPRL_DATABASE_URL", None)
    env["PPRL_TOKEN"] = str(_cli(env, "admin", "init")["token"])
    partner = str(_cli(env, "admin", "token", "create", "--role", "partner", "--name", "housing")["token"])
    secret = tmp_path / "project.key"
    write_secret(secret, new_secret())
    csv = tmp_path / "housing-export.csv"
    rows = _messy_csv(csv)
    server = start_server(env, tls, port, log=tmp_path / "server.log")
    requests: list[dict[str, Any]] = []
    try:
        project = _cli(env, "project", "create", "--name", "fsu", "--spec", str(EXAMPLE_SPEC),
                       "--purpose", "Frequent users", "--member", "housing")  # fmt: skip
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_context(ignore_https_errors=True).new_page()
            page.on("request", lambda r: requests.append(
                {"url": r.url, "method": r.method, "body": r.post_data_buffer, "headers": r.headers}))
            page.goto(f"{url}/partner")
            page.fill("#token", partner)
            page.click("#load-projects")
            page.wait_for_selector(f"#project option[value='{project['id']}']", state="attached")
            page.select_option("#project", project["id"])
            page.wait_for_selector("#project-facts:not([hidden])")
            shown = page.inner_text("#enclave-fp").replace(" ", "")
            key = json.loads(subprocess.run(["curl", "-s", "--cacert", str(tls.ca_cert),
                                             f"{url}/v1/enclave/public-key"], capture_output=True,
                                            text=True, check=True).stdout)  # fmt: skip
            assert shown == key["fingerprint"].replace(" ", "")
            page.fill("#pinned", "0" * 64)
            assert "does NOT match" in page.inner_text("#pin-status")
            page.fill("#pinned", key["fingerprint"])
            page.set_input_files("#secret", str(secret))
            page.set_input_files("#data", str(csv))
            page.click("#check")
            page.locator("#check-summary", has_text="rows read").wait_for()
            summary = page.inner_text("#check-summary")
            assert f"{len(rows) + 1:,} rows read" in summary, summary
            assert "total row" in summary
            report = page.locator("#report tbody tr").all_inner_texts()
            assert any(r.startswith("dob") and "Date of Birth" in r for r in report), report
            page.click("#submit")
            page.locator("#verdict", has_text=re.compile("Accepted|Rejected")).wait_for(timeout=120_000)
            assert page.inner_text("#verdict").startswith("Accepted"), page.inner_text("#verdict")
            shot = tmp_path / "partner-page.png"
            page.screenshot(path=str(shot), full_page=True)
            browser.close()
        assert shot.stat().st_size > 10_000

        # what carried data: only the upload; nothing plaintext in any URL, header or body
        # (Chromium does not expose a Blob body to Playwright: the upload's body is checked
        # where it landed, the sealed blob the API stored)
        sending = [r for r in requests if r["method"] not in ("GET", "HEAD")]
        assert [r["method"] for r in sending] == ["POST"] and "/submissions" in sending[0]["url"]
        assert sending[0]["headers"]["content-type"] == "application/vnd.pprl.sealed"
        stored = [p.read_bytes() for p in (tmp_path / "data").rglob("*.sealed")]
        assert len(stored) == 1
        values = set()
        for row in rows:
            for k in ("nhs_number", "surname", "forename", "date_of_birth", "postcode"):
                v = row.get(k)
                if v and len(v) >= 5:
                    values.add(v.encode())
        assert len(values) > 300
        for r in [*requests, {"url": "stored", "body": stored[0], "headers": {}}]:
            blob = (r["body"] or b"") + r["url"].encode() + json.dumps(r["headers"]).encode()
            leaked = [v for v in values if v in blob]
            assert not leaked, (r["url"], leaked[:3])

        # the same rows through pprl hash + pprl submit: the enclave opens the same table
        hashed = tmp_path / "housing.parquet"
        subprocess.run([sys.executable, "-m", "service.cli", "hash", "--spec", str(EXAMPLE_SPEC),
                        "--secret", str(secret), str(csv), str(hashed)], env=env, check=True,
                       capture_output=True)  # fmt: skip
        cli_env = {**env, "PPRL_TOKEN": partner}
        subprocess.run([sys.executable, "-m", "service.cli", "submit", "--project", "fsu",
                        "--enclave-fingerprint", key["fingerprint"], str(hashed)], env=cli_env,
                       check=True, capture_output=True)  # fmt: skip
        _wait_accepted(env, project["id"], 2)
        tables = _opened(Settings(data_dir=tmp_path / "data"), project["id"])
        web = next(t for v, t in tables.items() if v.startswith("pprl-web"))
        cli = next(t for v, t in tables.items() if not v.startswith("pprl-web"))
        assert web.num_rows == cli.num_rows == len(rows)
        for name in cli.column_names:
            assert web.column(name).combine_chunks().equals(cli.column(name).combine_chunks()), name
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_standalone_page_checks_and_seals_from_disk(tmp_path: Path) -> None:
    if not (STATIC / "partner-standalone.html").exists():
        pytest.fail("the partner page is not built (make web builds it)")
    from playwright.sync_api import sync_playwright

    from linkage.encode.kit import partner_kit
    from linkage.spec import load_spec, policy_fingerprint

    spec = load_spec(EXAMPLE_SPEC)
    kit = tmp_path / "kit.json"
    kit.write_text(json.dumps({"project_id": "p", "project_name": "fsu", "kit": partner_kit(spec),
                               "policy_fingerprint": policy_fingerprint(spec.disclosure),
                               "enclave_public_key_hex": "11" * 32,
                               "enclave_key_fingerprint_hex": "ab" * 32}))  # fmt: skip
    secret = tmp_path / "project.key"
    write_secret(secret, new_secret())
    csv = tmp_path / "export.csv"
    rows = _messy_csv(csv)
    page_file = tmp_path / "pprl-partner.html"
    shutil.copy(STATIC / "partner-standalone.html", page_file)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_file.as_uri())
        page.set_input_files("#kit-file", str(kit))
        # the kit claims a fingerprint for its key, but the claim comes from the operator:
        # the page checks the key it will seal to, so the claimed value does not match
        page.fill("#pinned", "ab" * 32)
        assert "does NOT match" in page.inner_text("#pin-status")
        true_fingerprint = hashlib.sha256(bytes.fromhex("11" * 32)).hexdigest()
        assert page.inner_text("#enclave-fp").replace(" ", "") == true_fingerprint
        page.fill("#pinned", true_fingerprint)
        page.set_input_files("#secret", str(secret))
        page.set_input_files("#data", str(csv))
        page.click("#check")
        page.locator("#check-summary", has_text="rows read").wait_for()
        assert f"{len(rows):,} will be hashed" in page.inner_text("#check-summary")
        assert page.is_disabled("#submit")  # offline: no upload
        page.click("#save-sealed")
        page.locator("#verdict", has_text=re.compile("Sealed|rror|not")).wait_for()
        assert page.inner_text("#verdict").startswith("Sealed"), page.inner_text("#verdict")
        browser.close()
    assert not errors
