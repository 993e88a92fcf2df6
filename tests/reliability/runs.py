"""Helpers the reliability tests share: extracts big enough that a run is still going
when a test kills something, and a run's state read straight from the database."""

from __future__ import annotations

from pathlib import Path

import pyarrow.csv as pacsv

from linkage.encode import hash_file
from linkage.spec import load_spec
from linkage.synthetic import generate_partners
from service.db.models import Run
from tests.conftest import EXAMPLE_SPEC
from tests.service_fixtures import Service

KEY = bytes(range(32))


def big_extracts(tmp: Path, people: int) -> dict[str, bytes]:
    """Hashed housing and police extracts of ``people`` synthetic people."""
    out = {}
    spec = load_spec(EXAMPLE_SPEC)
    for name, table in generate_partners(people, seed=8).items():
        if name not in ("housing", "police"):
            continue
        src, dst = tmp / f"{name}.csv", tmp / f"{name}.parquet"
        pacsv.write_csv(table.drop(["person_id"]), src)
        hash_file(spec, KEY, src, dst)
        out[name] = dst.read_bytes()
    return out


def run_state(s: Service, run_id: str) -> Run:
    """The run as the database holds it now (detached)."""
    with s.http.app.state.pprl.db.snapshot() as session:  # type: ignore[attr-defined]
        run = session.get(Run, run_id)
        assert run is not None
        session.expunge(run)
        return run


def queue_big_run(s: Service, tmp: Path, people: int = 30_000) -> str:
    """Upload :func:`big_extracts` for every partner and queue a run; returns its id."""
    for name, data in big_extracts(tmp, people).items():
        assert s.upload(s.tokens[name], data).status_code == 202
    analyst = s.as_(s.tokens["analyst"])
    run_id: str = s.http.post(f"/v1/projects/{s.project_id}/runs", headers=analyst).json()["id"]
    return run_id
