"""The DPO's pages in real headless Chromium (Debian's package, driven by Playwright):
sign in, filter the timeline, open a project, see the chain status, take a screenshot."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from service.tlscert import make_local_tls
from tests.conftest import EXAMPLE_SPEC
from tests.live_server import free_port, start_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.browser


def _cli(env: dict[str, str], *args: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "service.cli", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_dpo_signs_in_filters_opens_a_project_and_sees_the_chain_status(tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    tls = make_local_tls(tmp_path / "tls")
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PPRL_DATA_DIR": str(tmp_path / "data"),
        "PPRL_URL": url,
        "PPRL_CA_BUNDLE": str(tls.ca_cert),
        "PPRL_WORKER_EMBEDDED": "false",
    }
    env.pop("PPRL_DATABASE_URL", None)
    env["PPRL_TOKEN"] = str(_cli(env, "admin", "init")["token"])
    dpo = str(_cli(env, "admin", "token", "create", "--role", "dpo", "--name", "dora-dpo")["token"])
    _cli(env, "admin", "token", "create", "--role", "partner", "--name", "housing")
    server = start_server(env, tls, port, log=tmp_path / "server.log")
    try:
        project = _cli(
            env,
            "project",
            "create",
            "--name",
            "fsu",
            "--spec",
            str(EXAMPLE_SPEC),
            "--purpose",
            "Frequent users across services",
            "--member",
            "housing",
        )
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM,
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    "--disable-quic",
                ],
            )
            page = browser.new_context(ignore_https_errors=True).new_page()
            page.goto(f"{url}/dpo")
            assert page.url.endswith("/dpo/login")
            page.fill("#token", "pprl_not-a-real-token")
            page.click("#sign-in")
            assert "not a valid DPO token" in page.inner_text("#login-error")
            page.fill("#token", dpo)
            page.click("#sign-in")
            page.wait_for_selector("#chain-status")
            status = page.inner_text("#chain-status")
            assert "verified up to event" in status
            page.fill("#filter-action", "project.")
            page.click("#apply-filters")
            page.wait_for_selector("#events")
            rows = page.locator("#events tr").all_inner_texts()[1:]
            assert rows and all("project." in r for r in rows)
            page.click(f"a[href='/dpo/projects/{project['id']}']")
            page.wait_for_selector("#project-name")
            assert page.inner_text("#project-name") == "fsu"
            assert "Frequent users across services" in page.content()
            assert "verified up to event" in page.inner_text("#chain-status")
            shot = tmp_path / "dpo-project.png"
            page.screenshot(path=str(shot), full_page=True)
            cookies = {c["name"]: c for c in page.context.cookies()}
            browser.close()
        session_cookie = cookies["pprl_dpo"]
        assert (
            session_cookie["secure"]
            and session_cookie["httpOnly"]
            and session_cookie["sameSite"] == "Strict"
        )
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        import matplotlib.image as mpimg

        pixels = np.asarray(mpimg.imread(shot))
        assert pixels.shape[0] > 200 and pixels.std() > 0.05  # not blank
    finally:
        server.terminate()
        server.wait(timeout=30)
