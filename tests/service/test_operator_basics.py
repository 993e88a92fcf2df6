"""Operator basics: /docs and /redoc from bundled assets under the strict CSP, `/` links,
`pprl --version`, plain --help on every command, one-sentence --plot/--format errors."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from service.cli import app
from tests.service_fixtures import Service


def test_docs_and_redoc_load_only_the_services_own_assets(service: Service) -> None:
    for page, marker in (("/docs", "swagger-ui"), ("/redoc", "redoc")):
        r = service.http.get(page)
        assert r.status_code == 200 and marker in r.text
        assert "default-src 'self'" in r.headers["content-security-policy"]
        # no CDN and no inline script: every script/style is a same-origin file
        assert "http" not in r.text and "<script>" not in r.text
        assets = re.findall(r'(?:src|href)="([^"]+)"', r.text)
        assert assets and all(a.startswith("/docs/assets/") for a in assets)
        for asset in assets:
            got = service.http.get(asset)
            assert got.status_code == 200 and len(got.content) > 0, asset
    assert (
        service.http.get("/docs/assets/swagger-ui-bundle.js")
        .headers["content-type"]
        .startswith("text/javascript")
    )
    assert service.http.get("/docs/assets/..%2Fdocs.py").status_code == 404
    assert service.http.get("/docs/assets/core.py").status_code == 404
    assert service.http.get("/openapi.json").json()["paths"]
    # /docs runs under the service's policy unchanged; /redoc only adds inline styles
    policy = "default-src 'self'; frame-ancestors 'none'"
    assert service.http.get("/docs").headers["content-security-policy"] == policy
    redoc = service.http.get("/redoc").headers["content-security-policy"]
    assert redoc.startswith(policy) and "script-src" not in redoc
    assert service.http.get("/healthz").headers["content-security-policy"] == policy


def test_home_links_to_the_analyst_and_dpo_pages_and_the_docs(service: Service) -> None:
    r = service.http.get("/")
    assert r.status_code == 200
    links = set(re.findall(r'href="([^"]+)"', r.text))
    assert {"/analyst", "/dpo", "/docs"} <= links


def _commands(group: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, sub in getattr(group, "commands", {}).items():
        found += _commands(sub, (*path, name))
    return found


def test_every_help_is_plain_and_version_prints() -> None:
    runner = CliRunner()
    commands = _commands(get_command(app))
    assert ("runs", "list") in commands and ("results",) in commands
    for path in commands:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "120"})
        assert result.exit_code == 0, (path, result.output)
        for bad in ("<bool>", "<str>", "<path>", "<list", "<int>", "{"):
            assert bad not in result.output, (path, bad, result.output)
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and re.fullmatch(r"pprl \S+\n", result.output)


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (["--plot", "{tmp}/missing/chart.png"], "the folder {tmp}/missing does not exist"),
        (["--plot", "{tmp}/chart.gif"], "unknown chart file extension '.gif'"),
        (["--plot", "{tmp}/chart"], "unknown chart file extension '(none)'"),
        (["--format", "xml"], "choose table, json, csv or xlsx"),
        (
            ["--format", "csv", "--output", "{tmp}/nope/x.csv"],
            "the folder {tmp}/nope does not exist",
        ),
    ],
)
def test_bad_output_options_fail_in_one_sentence(
    tmp_path: Path, args: list[str], sentence: str
) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "results", "--project", "p", *argv],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "COLUMNS": "300"},
    )  # fmt: skip
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert sentence.replace("{tmp}", str(tmp_path)) in lines[0]
    assert not list(tmp_path.iterdir())  # nothing written
