"""The light partner client: the wheel installed alone into a fresh virtualenv holds no
server package, and its `pprl check`, `pprl hash` and `pprl submit` work against a live
server (a real `pprl serve` over TLS, run from the full development install)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.csv as pacsv
import pytest

from linkage.synthetic import generate_partners
from service.tlscert import make_local_tls
from tests.conftest import EXAMPLE_SPEC
from tests.live_server import free_port, start_server

ROOT = Path(__file__).resolve().parents[3]
SERVER_DISTS = {"splink", "duckdb", "pyspark", "fastapi", "starlette", "sqlalchemy", "psycopg",
                "psycopg-binary", "opendp", "matplotlib", "uvicorn", "alembic", "pandas"}  # fmt: skip

pytestmark = pytest.mark.slow


def _run(args: list[str | Path], env: dict[str, str], cwd: Path, timeout: float = 300) -> str:
    result = subprocess.run([str(a) for a in args], env=env, cwd=cwd, capture_output=True,
                            text=True, timeout=timeout, check=False)  # fmt: skip
    assert result.returncode == 0, (args, result.stdout[-2000:], result.stderr[-3000:])
    return result.stdout


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with only the built wheel (and its light dependencies)."""
    root = tmp_path_factory.mktemp("partner-client")
    source = root / "src"
    source.mkdir()
    # build from a copy: an in-tree build would leave build/ in the shared checkout
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in ("linkage", "service", "migrations"):
        shutil.copytree(ROOT / package, source / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    wheels = root / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, source], env, root)
    (wheel,) = wheels.glob("pprl_linkage-*-py3-none-any.whl")  # a pure wheel
    venv = root / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    _run([base, "-m", "venv", venv], env, root)
    _run([venv / "bin" / "python", "-m", "pip", "install", "-q", wheel], env, root, timeout=900)
    return venv


def test_the_plain_install_holds_no_server_package(client_venv: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    listed = json.loads(_run([client_venv / "bin" / "python", "-m", "pip", "list",
                              "--format", "json"], env, tmp_path))  # fmt: skip
    installed = {d["name"].lower() for d in listed}
    assert "pprl-linkage" in installed
    assert not installed & SERVER_DISTS, installed & SERVER_DISTS
    # a server command says what to install, in one sentence
    result = subprocess.run([client_venv / "bin" / "pprl", "serve"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert result.returncode != 0
    assert "pip install 'pprl-linkage[server]'" in " ".join(result.stderr.split())


def test_check_hash_and_submit_from_the_plain_install(client_venv: Path, tmp_path: Path) -> None:
    tls = make_local_tls(tmp_path / "tls")
    port = free_port()
    server_env = {
        **os.environ,
        "PPRL_DATA_DIR": str(tmp_path / "data"),
        "PPRL_DATABASE_URL": f"sqlite:///{tmp_path / 'pprl.db'}",
        "PPRL_URL": f"https://127.0.0.1:{port}",
        "PPRL_CA_BUNDLE": str(tls.ca_cert),
        "PPRL_WORKER_EMBEDDED": "true",
        "PPRL_WORKER_POLL_SECONDS": "0.2",
    }
    full = [sys.executable, "-m", "service.cli"]
    init = json.loads(_run([*full, "admin", "init", "--json"], server_env, ROOT))
    server_env["PPRL_TOKEN"] = init["token"]
    proc = start_server(server_env, tls, port, log=tmp_path / "server.log")
    try:
        _run([*full, "admin", "partner", "add", "housing", "--json"], server_env, ROOT)
        partner = json.loads(_run([*full, "admin", "token", "create", "--role", "partner",
                                   "--name", "housing-laptop", "--partner", "housing", "--json"],
                                  server_env, ROOT))  # fmt: skip
        _run([*full, "project", "create", "--name", "fsu", "--spec", EXAMPLE_SPEC, "--purpose",
              "frequent users", "--member", "housing-laptop", "--json"], server_env, ROOT)  # fmt: skip

        # the partner's side: only the client virtualenv, from a directory with no source
        client = {k: v for k, v in os.environ.items() if not k.startswith(("PPRL_", "PYTHON"))}
        client |= {"PPRL_URL": server_env["PPRL_URL"], "PPRL_CA_BUNDLE": str(tls.ca_cert),
                   "PPRL_TOKEN": partner["token"], "PPRL_CONFIG_DIR": str(tmp_path / "cfg")}  # fmt: skip
        pprl = client_venv / "bin" / "pprl"
        work = tmp_path / "partner"
        work.mkdir()
        _run([pprl, "keygen", "project.key"], client, work)
        extract = work / "extract.csv"  # projects refuse tiny extracts: a few hundred rows
        table = generate_partners(300, seed=5)["housing"].drop(["person_id"])
        pacsv.write_csv(table, extract)
        report = json.loads(_run([pprl, "check", "--spec", EXAMPLE_SPEC, extract, "--json"],
                                 client, work))  # fmt: skip
        assert report["rows"] > 0 and {c["field"] for c in report["columns"]} >= {"nhs_number"}
        hashed = json.loads(_run([pprl, "hash", "--spec", EXAMPLE_SPEC, "--secret", "project.key",
                                  extract, "hashed.parquet", "--json"], client, work))  # fmt: skip
        assert hashed["rows_written"] > 0
        receipt = json.loads(_run([pprl, "submit", "--project", "fsu", "hashed.parquet", "--trust",
                                   "--wait", "--json"], client, work))  # fmt: skip
        assert receipt["partner"] == "housing" and receipt["status"] == "accepted", receipt
    finally:
        proc.terminate()
        proc.wait(timeout=10)
