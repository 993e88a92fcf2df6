"""Run rules against the real service in process with the real enclave worker, on SQLite
and PostgreSQL: the enclave's own state cannot be forged, deleted or rolled back
unnoticed; analysts choose parameters only from the project's menu; runs and
resubmissions are rate-limited; small extracts are refused; the privacy budget cannot be
overspent by workers racing; output checking holds a release until it is approved."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from linkage.encode import read_manifest
from linkage.manifest import MANIFEST_KEY
from linkage.spec import policy_fingerprint
from service.audit import Actor
from service.cli.sealed_extract import seal_extract
from service.crypto import load_enclave_private_key
from service.db import Database
from service.db.models import Principal, Project, Run, Submission
from service.projects.service import disclosure_policy
from service.worker.acceptance import acceptance_tag
from service.worker.enclave import state_dir
from service.worker.loop import Worker
from service.worker.queue import claim_next, finish_failed
from service.worker.state import state_path
from tests.conftest import FUZZ_EXAMPLES
from tests.service_fixtures import Service


def _slice(extract: Path, rows: int | list[int]) -> Path:
    """The first ``rows`` rows (or the rows at those indices) of a hashed extract, with
    its manifest to match."""
    picks = list(range(rows)) if isinstance(rows, int) else rows
    source = extract.with_name(f"{extract.stem}-{len(picks)}-{uuid.uuid4().hex[:6]}.parquet")
    table = pq.read_table(extract)
    manifest = replace(read_manifest(extract), rows_written=len(picks))
    meta = {**(table.schema.metadata or {}), MANIFEST_KEY: manifest.to_json()}
    pq.write_table(table.take(picks).replace_schema_metadata(meta), source)
    return source


def _store(s: Service, partner: str, extract: Path, rows: int | list[int] | None = None) -> None:
    """Store a partner's sealed, accepted submission as the upload path and the enclave's
    acceptance leave it, with its acceptance tag (the upload format is tested elsewhere;
    here the enclave's rules are under test)."""
    state = s.http.app.state.pprl  # type: ignore[attr-defined]
    source = extract if rows is None else _slice(extract, rows)
    sub_id = str(uuid.uuid4())
    sealed = s.settings.blobs_dir / s.project_id / f"{sub_id}.sealed"
    sealed.parent.mkdir(parents=True, exist_ok=True)
    with state.db.transaction() as session:
        project = session.get(Project, s.project_id)
        assert project is not None
        policy = policy_fingerprint(disclosure_policy(project))
    seal_extract(source, sealed, state.enclave_public_key, s.project_id, policy)
    now = datetime.now(UTC)
    with state.db.transaction() as session:
        pid = session.execute(select(Principal.id).where(Principal.name == partner)).scalar_one()
        version = (
            session.execute(
                select(func.max(Submission.version)).where(
                    Submission.project_id == s.project_id, Submission.partner_id == pid
                )
            ).scalar()
            or 0
        ) + 1
        session.execute(
            update(Submission)
            .where(
                Submission.project_id == s.project_id,
                Submission.partner_id == pid,
                Submission.superseded_at.is_(None),
            )  # fmt: skip
            .values(superseded_at=now)
        )
        row = Submission(
            id=sub_id, project_id=s.project_id, partner_id=pid, version=version,
            rows=pq.read_metadata(source).num_rows, rows_rejected=0, bytes=sealed.stat().st_size,
            sha256=hashlib.sha256(sealed.read_bytes()).hexdigest(),
            blob_path=str(sealed.relative_to(s.settings.data_dir)),
            received_at=now, superseded_at=None, purged_at=None,
        )  # fmt: skip
        row.status = "accepted"
        row.enclave_tag = acceptance_tag(
            load_enclave_private_key(s.settings.enclave_private_key_path), row
        )
        session.add(row)


def _project(s: Service, extracts: dict[str, Path], **extra: Any) -> None:
    s.project_id = s.project(name=f"p-{uuid.uuid4().hex[:8]}",
                             members=["housing", "police", "analyst"], **extra)  # fmt: skip
    for partner in ("housing", "police"):
        _store(s, partner, extracts[partner])


def _run(s: Service, worker: Worker | None = None, **params: Any) -> dict[str, Any]:
    return s.run_now(worker, **params)


def _events(s: Service, action: str) -> list[dict[str, Any]]:
    return s.audit_events(action)


def _state_version(s: Service) -> int:
    state = s.http.app.state.pprl  # type: ignore[attr-defined]
    with state.db.transaction() as session:
        project = session.get(Project, s.project_id)
        assert project is not None
        return int(project.enclave_state_version)


ALTERED = "enclave state for this project is missing or was altered (version {} expected)"


def test_forged_deleted_and_rolled_back_state_each_fail_the_run_audited(
    project_service: Service, hashed_extracts: dict[str, Path]
) -> None:
    s = project_service
    _project(s, hashed_extracts, run_rules={"runs_per_period": 50})
    worker = Worker(s.settings)
    first = _run(s, worker)
    assert first["status"] == "done", first["message"]
    assert _state_version(s) == 1
    directory = state_dir(s.settings)
    v1 = state_path(directory, s.project_id, 1)
    assert v1.exists() and not state_path(directory, s.project_id, 0).exists()
    kept_v1 = v1.read_bytes()
    assert _run(s, worker)["status"] == "done"
    v2 = state_path(directory, s.project_id, 2)
    assert _state_version(s) == 2 and v2.exists() and not v1.exists()  # old versions pruned
    good_v2 = v2.read_bytes()

    # forged: anyone holding the public key could write the old sealed format; and
    # one flipped bit of a genuine file
    from service.crypto import seal_bytes

    public = s.http.app.state.pprl.enclave_public_key  # type: ignore[attr-defined]
    forged = json.dumps({"project_id": s.project_id, "version": 2, "anchors": {}}).encode()
    for attempt in (seal_bytes(forged, public), good_v2[:-1] + bytes([good_v2[-1] ^ 1])):
        v2.write_bytes(attempt)
        state = _run(s, worker)
        assert state["status"] == "failed" and state["message"] == ALTERED.format(2), state
    # a genuine file of another project is not this project's state either
    v2.write_bytes(good_v2)
    v2.rename(state_path(directory, str(uuid.uuid4()), 2))
    state = _run(s, worker)
    assert state["status"] == "failed" and state["message"] == ALTERED.format(2)
    # deleted
    assert not v2.exists()
    state = _run(s, worker)
    assert state["status"] == "failed" and state["message"] == ALTERED.format(2)
    # rolled back: the genuine version-1 file put back as version 2
    v2.write_bytes(kept_v1)
    state = _run(s, worker)
    assert state["status"] == "failed" and state["message"] == ALTERED.format(2)
    # rolled back together with the database counter: the audit log still says 2
    v1.write_bytes(kept_v1)
    v2.unlink()
    with s.http.app.state.pprl.db.transaction() as session:  # type: ignore[attr-defined]
        session.execute(
            update(Project).where(Project.id == s.project_id).values(enclave_state_version=1)
        )
    state = _run(s, worker)
    assert state["status"] == "failed" and state["message"] == ALTERED.format(2)
    failed = _events(s, "run.failed")
    assert len(failed) == 6 and all(e["message"] == ALTERED.format(2) for e in failed)
    assert all(e["outcome"] == "failed" for e in failed)
    # the genuine state back in place: runs work again
    with s.http.app.state.pprl.db.transaction() as session:  # type: ignore[attr-defined]
        session.execute(
            update(Project).where(Project.id == s.project_id).values(enclave_state_version=2)
        )
    v2.write_bytes(good_v2)
    assert _run(s, worker)["status"] == "done"
    assert _state_version(s) == 3


def test_parameters_come_from_the_menu_fixed_at_creation(
    project_service: Service, hashed_extracts: dict[str, Path]
) -> None:
    s = project_service
    _project(s, hashed_extracts, run_rules={"frequent_thresholds": [10, 5]})
    analyst = s.as_(s.tokens["analyst"])
    shown = s.http.get(f"/v1/projects/{s.project_id}", headers=analyst).json()["run_rules"]
    assert shown["frequent_thresholds"] == [10, 5] and shown["match_thresholds"] == ["balanced"]
    assert shown["min_extract_rows"] == 50 and shown["runs_per_period"] == 10
    s.sign_in_dpo()
    page = s.http.get(f"/dpo/projects/{s.project_id}").text
    assert "frequent users from 10 or 5 contacts" in page
    assert "at least 50 rows" in page and "at most 4 resubmissions per partner" in page
    for body in ({"threshold": 0.999999}, {"frequent_threshold": 1}, {"threshold": 0.9}):
        r = s.http.post(f"/v1/projects/{s.project_id}/runs", headers=analyst, json=body)
        assert r.status_code == 422, r.text
        assert "menu" in r.json()["detail"]
    denied = _events(s, "access.denied")
    assert [e["status"] for e in denied] == [422, 422, 422]
    assert all("menu" in e["reason"] for e in denied)
    # a value from the menu is accepted, and what the run used is recorded
    state = _run(s, frequent_threshold=5)
    assert state["status"] == "done", state
    assert state["params"] == {"frequent_threshold": 5, "threshold": "balanced"}
    # a run written into the queue behind the API's back is refused by the enclave too
    with s.http.app.state.pprl.db.transaction() as session:  # type: ignore[attr-defined]
        run = session.execute(select(Run).where(Run.project_id == s.project_id)).scalar_one()
        session.add(Run(id=str(uuid.uuid4()), project_id=s.project_id,
                        requested_by=run.requested_by, status="queued", stage="queued",
                        progress=0.0, params_json=json.dumps({"frequent_threshold": 1}),
                        created_at=datetime.now(UTC), attempts=0))  # fmt: skip
    Worker(s.settings).run_once()
    failed = _events(s, "run.failed")
    assert [e["message"] for e in failed] == ["the run's parameters are not in the project's menu"]


def test_project_creation_refuses_bad_rules(project_service: Service) -> None:
    s = project_service
    for rules, where in (
        ({"min_extract_rows": 5}, "min_extract_rows"),
        ({"match_thresholds": [1.5]}, "match_thresholds"),
        ({"output_checker": "nobody"}, "output_checker"),
        ({"surprise": 1}, "surprise"),
    ):
        r = s.http.post(
            "/v1/projects",
            headers=s.as_(s.admin),
            json={"name": f"x-{uuid.uuid4().hex[:6]}", "spec": _spec(), "run_rules": rules},
        )
        assert r.status_code in (400, 422), r.text
        assert where in r.json()["detail"], r.json()


def _spec() -> dict[str, Any]:
    from linkage.spec import load_spec
    from tests.conftest import EXAMPLE_SPEC

    return load_spec(EXAMPLE_SPEC).model_dump(mode="json")


def test_run_rate_limit_refuses_with_429_audited(project_service: Service) -> None:
    s = project_service
    s.project_id = s.project(name="rated", members=["analyst"],
                             run_rules={"runs_per_period": 2, "period_hours": 1})  # fmt: skip
    analyst = s.as_(s.tokens["analyst"])
    codes = [
        s.http.post(f"/v1/projects/{s.project_id}/runs", headers=analyst).status_code
        for _ in range(4)
    ]
    assert codes == [202, 202, 429, 429]
    r = s.http.post(f"/v1/projects/{s.project_id}/runs", headers=analyst)
    assert "2 runs in the last 1 hours" in r.json()["detail"]
    assert [e["status"] for e in _events(s, "access.denied")] == [429, 429, 429]


def test_small_extract_fails_the_run_in_the_enclave(
    project_service: Service, hashed_extracts: dict[str, Path]
) -> None:
    s = project_service
    s.project_id = s.project(name="small", members=["housing", "police", "analyst"])
    _store(s, "housing", hashed_extracts["housing"])
    _store(s, "police", hashed_extracts["police"], rows=49)
    state = _run(s)
    assert state["status"] == "failed"
    assert state["message"] == (
        "the current submission of police has fewer rows than the project's minimum of 50"
    )
    assert _events(s, "run.failed")[0]["message"] == state["message"]
    _store(s, "police", hashed_extracts["police"], rows=50)
    assert _run(s)["status"] == "done"


def test_upload_rules_refuse_small_extracts_and_too_many_resubmissions(
    project_service: Service, hashed_extracts: dict[str, Path]
) -> None:
    """The upload-side checks, on the envelope's declared row count and the partner's
    resubmissions in the period, against the real database."""
    from service.errors import TooManyRequests, Unprocessable
    from service.projects.limits import check_upload_rules

    s = project_service
    s.project_id = s.project(name="limits", members=["housing"],
                             run_rules={"resubmissions_per_period": 2})  # fmt: skip
    db = s.http.app.state.pprl.db  # type: ignore[attr-defined]
    with db.transaction() as session:
        project = session.get(Project, s.project_id)
        pid = session.execute(select(Principal.id).where(Principal.name == "housing")).scalar()
        with pytest.raises(Unprocessable, match="has 49 rows; this project needs at least 50"):
            check_upload_rules(session, project, pid, 49)
        check_upload_rules(session, project, pid, 50)
    for _ in range(3):  # the first submission and two resubmissions
        with db.transaction() as session:
            project = session.get(Project, s.project_id)
            check_upload_rules(session, project, pid, 500)
        _store(s, "housing", hashed_extracts["housing"], rows=60)
    with db.transaction() as session:
        project = session.get(Project, s.project_id)
        with pytest.raises(TooManyRequests, match="resubmitted 2 times in the last 24 hours"):
            check_upload_rules(session, project, pid, 500)


def _drain(data_dir: str, url: str, start: Any) -> None:
    """One enclave worker process: wait for the start signal, then run until the queue
    is empty (a process of its own, as in production: workers never share one)."""
    from service.settings import Settings

    worker = Worker(Settings(data_dir=Path(data_dir), database_url=url, worker_embedded=False))
    start.wait()
    while worker.run_once() is not None:
        pass


def _race_workers(s: Service, n: int = 2) -> None:
    """``n`` worker processes started at the same instant, drained, joined."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    start = context.Event()
    url = s.http.app.state.pprl.db.url  # type: ignore[attr-defined]
    procs = [
        context.Process(target=_drain, args=(str(s.settings.data_dir), url, start))
        for _ in range(n)
    ]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(timeout=600)
        assert p.exitcode == 0


def _dp_policy() -> dict[str, Any]:
    policy = dict(_spec()["disclosure"])
    policy["dp"] = {"epsilon_per_release": 1.0, "epsilon_budget": 1.0}
    return policy


def test_two_workers_claiming_at_once_cannot_overspend_the_budget(
    project_service: Service, hashed_extracts: dict[str, Path]
) -> None:
    s = project_service
    _project(s, hashed_extracts, disclosure=_dp_policy())
    analyst = s.as_(s.tokens["analyst"])
    for _ in range(3):
        assert s.http.post(f"/v1/projects/{s.project_id}/runs", headers=analyst).status_code == 202

    # two workers, each with its own connection pool, claim at the same instant: runs of
    # one project are serialised, so only one gets a run
    url = s.http.app.state.pprl.db.url  # type: ignore[attr-defined]
    dbs = [Database(url), Database(url)]
    barrier = threading.Barrier(2)
    claims: list[Any] = [None, None]

    def claim(i: int) -> None:
        barrier.wait()
        claims[i] = claim_next(dbs[i], Actor(f"worker:{i}", "enclave"), 300)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    taken = [c for c in claims if c is not None]
    assert len(taken) == 1 and taken[0].epsilon_reserved == 1.0 and taken[0].refused is None
    winner = claims.index(taken[0])
    # the claimed run fails: its reservation stays spent, so the next claim is refused
    finish_failed(dbs[winner], taken[0], Actor(f"worker:{winner}", "enclave"), "stopped")
    with dbs[0].transaction() as session:
        assert session.get(Project, s.project_id).epsilon_spent == 1.0  # type: ignore[union-attr]

    # now two real workers race over what is left: nothing more can be spent
    _race_workers(s)
    runs = s.http.get(f"/v1/projects/{s.project_id}/runs", headers=analyst).json()
    assert [r["status"] for r in runs] == ["failed", "failed", "failed"]
    assert all("privacy budget is spent" in r["message"] for r in runs[1:])
    with dbs[0].transaction() as session:
        assert session.get(Project, s.project_id).epsilon_spent == 1.0  # type: ignore[union-attr]
    assert not _events(s, "results.released")
    for db in dbs:
        db.dispose()


def test_budget_allows_exactly_what_it_holds_under_racing_workers(
    project_service: Service, hashed_extracts: dict[str, Path]
) -> None:
    s = project_service
    policy = _dp_policy()
    policy["dp"] = {"epsilon_per_release": 0.5, "epsilon_budget": 1.0}
    _project(s, hashed_extracts, disclosure=policy)
    analyst = s.as_(s.tokens["analyst"])
    for _ in range(4):
        assert s.http.post(f"/v1/projects/{s.project_id}/runs", headers=analyst).status_code == 202
    _race_workers(s)
    runs = s.http.get(f"/v1/projects/{s.project_id}/runs", headers=analyst).json()
    outcomes = sorted((r["status"], r["message"]) for r in runs)
    assert [o[0] for o in outcomes] == ["done", "done", "failed", "failed"], outcomes
    released = _events(s, "results.released")
    assert sum(e["epsilon_spent"] for e in released) == 1.0
    assert [e["state_version"] for e in released] == [1, 2]
    with s.http.app.state.pprl.db.transaction() as session:  # type: ignore[attr-defined]
        assert session.get(Project, s.project_id).epsilon_spent == 1.0


def test_output_checking_holds_the_release_until_approved(
    project_service: Service, hashed_extracts: dict[str, Path]
) -> None:
    s = project_service
    s.token("checker", "analyst")
    _project(s, hashed_extracts, run_rules={"output_checking": True, "output_checker": "checker"})
    analyst, dpo = s.as_(s.tokens["analyst"]), s.as_(s.tokens["dpo"])
    checker = s.as_(s.tokens["checker"])
    base = f"/v1/projects/{s.project_id}/runs"
    worker = Worker(s.settings)
    held = _run(s, worker)
    assert held["status"] == "awaiting_approval", held
    r = s.http.get(f"{base}/{held['id']}/results", headers=analyst)
    assert r.status_code == 409 and "approval" in r.json()["detail"]
    # the analyst who asked cannot approve (nor see the held release)
    for method in ("GET", "POST"):
        r = s.http.request(method, f"{base}/{held['id']}/approval", headers=analyst,
                           json={"decision": "approve"} if method == "POST" else None)  # fmt: skip
        assert r.status_code == 403, r.text
    # the checker sees it, then approves
    pending = s.http.get(f"{base}/{held['id']}/approval", headers=checker)
    assert pending.status_code == 200 and pending.json()["run_id"] == held["id"]
    assert not _events(s, "results.released")
    r = s.http.post(f"{base}/{held['id']}/approval", headers=checker,
                    json={"decision": "approve", "reason": "checked, safe"})  # fmt: skip
    assert r.status_code == 200 and r.json()["status"] == "done", r.text
    released = s.http.get(f"{base}/{held['id']}/results", headers=analyst)
    assert released.status_code == 200
    assert released.json()["figures"] == pending.json()["figures"]
    # a second run is refused by a DPO: the analyst never sees it
    second = _run(s, worker)
    assert second["status"] == "awaiting_approval"
    r = s.http.post(f"{base}/{second['id']}/approval", headers=dpo,
                    json={"decision": "refuse", "reason": "small cells"})  # fmt: skip
    assert r.status_code == 200 and r.json()["status"] == "refused"
    assert s.http.get(f"{base}/{second['id']}/results", headers=analyst).status_code == 409
    r = s.http.post(f"{base}/{second['id']}/approval", headers=dpo, json={"decision": "approve"})
    assert r.status_code == 409
    actions = [a for a, _ in s.audit_actions()]
    for action in ("results.held", "results.checked", "results.approved", "results.refused"):
        assert action in actions, action
    assert len(_events(s, "results.released")) == 1
    assert _events(s, "results.approved")[0]["reason"] == "checked, safe"
    denied = _events(s, "access.denied")
    assert len(denied) == 2 and all(e["status"] == 403 for e in denied)


def test_every_outcome_is_stored_on_the_time_quantum(
    project_service: Service, hashed_extracts: dict[str, Path]
) -> None:
    """A failure and a release are stored at a multiple of the quantum after the start,
    so how long a run took does not say which way it went."""
    s = project_service
    settings = s.settings.model_copy(update={"run_time_quantum_seconds": 1.5})
    s.project_id = s.project(name="timed", members=["housing", "police", "analyst"])
    failed = _run(s, Worker(settings))  # no submissions: fails at once
    _store(s, "housing", hashed_extracts["housing"])
    _store(s, "police", hashed_extracts["police"])
    done = _run(s, Worker(settings))
    assert failed["status"] == "failed" and done["status"] == "done"
    for state in (failed, done):
        started = datetime.fromisoformat(state["started_at"])
        finished = datetime.fromisoformat(state["finished_at"])
        took = (finished - started).total_seconds()
        # never before the first boundary (how far after depends on the machine's load)
        assert took >= 1.5, (state["status"], took)


def test_state_files_are_only_the_workers(
    project_service: Service, hashed_extracts: dict[str, Path]
) -> None:
    s = project_service
    _project(s, hashed_extracts)
    assert _run(s)["status"] == "done"
    path = state_path(state_dir(s.settings), s.project_id, 1)
    assert path.stat().st_mode & 0o077 == 0
    assert state_dir(s.settings).stat().st_mode & 0o077 == 0
    # nothing figure-level in the clear
    assert b"persons" not in path.read_bytes()
    shutil.rmtree(state_dir(s.settings))


def test_cli_results_approve_and_refuse(
    project_service: Service, hashed_extracts: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`pprl results approve|refuse` through the real command and the real app."""
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from service.cli import app as cli

    s = project_service
    _project(s, hashed_extracts, run_rules={"output_checking": True})
    worker = Worker(s.settings)
    held = [_run(s, worker)["id"], _run(s, worker)["id"]]

    def client(**kwargs: Any) -> TestClient:  # the CLI's HTTP client, bound to the app
        return TestClient(s.http.app, base_url="https://testserver", headers=kwargs["headers"])

    monkeypatch.setattr("service.client.httpx.Client", client)
    monkeypatch.setenv("PPRL_URL", "https://testserver")
    monkeypatch.setenv("PPRL_TOKEN", s.tokens["dpo"])
    runner = CliRunner()
    args = ["results", "approve", "--project", s.project_id, "--run", held[0], "--json"]
    r = runner.invoke(cli, [*args, "--reason", "fine"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["status"] == "done"
    r = runner.invoke(cli, ["results", "refuse", "--project", s.project_id, "--run", held[1]])
    assert r.exit_code == 0 and "refused" in r.stdout, r.output
    r = runner.invoke(cli, ["results", "refuse", "--project", s.project_id, "--run", held[1]])
    assert r.exit_code != 0 and "only a held release" in " ".join(r.output.split())
    r = runner.invoke(cli, ["results", "maybe", "--project", s.project_id, "--run", held[1]])
    assert r.exit_code != 0 and "approve" in r.output


def test_upload_refuses_small_extracts_and_resubmissions_over_the_rate_audited(
    project_service: Service, hashed_extracts: dict[str, Path]
) -> None:
    """Through the real upload route: the envelope's declared row count below the
    minimum is refused (422), and a partner's resubmissions beyond the period's allowance
    get 429; both are audited as rejected submissions with their reason."""
    s = project_service
    s.project_id = s.project(name="upload-rules", members=["housing", "analyst"],
                             run_rules={"resubmissions_per_period": 1})  # fmt: skip
    token, extract = s.tokens["housing"], hashed_extracts["housing"]
    r = s.upload(token, _slice(extract, 60).read_bytes(), rows=49)
    assert r.status_code == 422 and "has 49 rows; this project needs at least 50" in r.text
    assert s.upload(token, _slice(extract, 60).read_bytes()).status_code == 202
    assert s.upload(token, _slice(extract, 70).read_bytes()).status_code == 202
    r = s.upload(token, _slice(extract, 80).read_bytes())
    assert r.status_code == 429, r.text
    assert "resubmitted 1 times in the last 24 hours" in r.json()["detail"]
    rejected = _events(s, "submission.rejected")
    assert [e["reason"] for e in rejected] == ["too_small", "rate_limited"]
    assert all(e["outcome"] == "rejected" for e in rejected)


def test_a_run_ends_the_same_way_whether_or_not_one_person_is_in_the_data(
    project_service: Service, hashed_extracts: dict[str, Path]
) -> None:
    """Issue 12, attack 5: a partner's smallest allowed extract, with and without one
    person the other partner also knows. The run must not release in one world and fail
    in the other (nor fail with different messages)."""
    import pyarrow as pa

    s = project_service
    housing = pq.read_table(hashed_extracts["housing"])
    police = pq.read_table(hashed_extracts["police"])
    base = police.slice(0, 49)
    # the 50th row: another police record, or a person housing knows (its own record)
    target = housing.slice(0, 1).select(base.column_names).cast(base.schema)
    outcomes = []
    for world, last in (("absent", police.slice(49, 1)), ("present", target)):
        table = pa.concat_tables([base, last])
        manifest = replace(read_manifest(hashed_extracts["police"]), rows_written=50)
        path = s.settings.data_dir.parent / f"police-{world}.parquet"
        meta = {**(police.schema.metadata or {}), MANIFEST_KEY: manifest.to_json()}
        pq.write_table(table.replace_schema_metadata(meta), path)
        s.project_id = s.project(name=f"world-{world}", members=["housing", "police", "analyst"])
        _store(s, "housing", hashed_extracts["housing"])
        _store(s, "police", path)
        state = _run(s)
        outcomes.append((state["status"], state["message"]))
    assert outcomes[0] == outcomes[1] == ("done", None), outcomes


@given(
    position=st.integers(min_value=0),
    flip=st.integers(min_value=1, max_value=255),
    cut=st.integers(min_value=0),
)
@settings(max_examples=FUZZ_EXAMPLES * 10)
def test_any_altered_byte_or_truncation_of_the_state_is_refused(
    tmp_path_factory: pytest.TempPathFactory, position: int, flip: int, cut: int
) -> None:
    """Whole classes of tampering, without a database: every single-byte change and every
    truncation of a genuine state file, a file moved to another version or project, and
    a file written under another enclave key all fail to load."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from service.worker.state import EnclaveState, StateError, load_state, store_state

    directory = tmp_path_factory.mktemp("state")
    key, other = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    project = str(uuid.uuid4())
    genuine = EnclaveState(project, version=3, releases=3, epsilon_spent=1.5,
                           rules_digest="ab" * 32, anchors={"public": ["x|persons.total"]},
                           linked={"partner|": 2})  # fmt: skip
    path = store_state(directory, key, genuine)
    assert load_state(directory, key, project, 3) == genuine
    blob = path.read_bytes()
    i = position % len(blob)
    for forged in (blob[:i] + bytes([blob[i] ^ flip]) + blob[i + 1 :], blob[: cut % len(blob)]):
        path.write_bytes(forged)
        with pytest.raises(StateError, match=r"missing or was altered \(version 3 expected\)"):
            load_state(directory, key, project, 3)
    path.write_bytes(blob)
    with pytest.raises(StateError):  # the public key alone cannot write state
        load_state(directory, other, project, 3)
    state_path(directory, project, 3).rename(state_path(directory, project, 4))
    with pytest.raises(StateError, match=r"version 4 expected"):  # replayed as a later version
        load_state(directory, key, project, 4)
    state_path(directory, project, 4).rename(state_path(directory, "another", 4))
    with pytest.raises(StateError):
        load_state(directory, key, "another", 4)


def test_the_state_remembers_the_newest_version_released_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each release keeps, per partner token and period, the newest submission version
    it linked; an older one offered later is named. A state file from before this was
    kept loads with nothing remembered (its next release starts remembering)."""
    import dataclasses

    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    import service.worker.state as state_module
    from service.worker.state import EnclaveState, load_state, source_key, store_state

    a, b, a_2027 = source_key("a", None), source_key("b", None), source_key("a", "2027")
    first = EnclaveState("p").next({}, 0.0, "d", {a: 2, b: 1})
    second = first.next({}, 0.0, "d", {a: 1, a_2027: 1})  # a went back; not remembered
    assert second.linked == {a: 2, b: 1, a_2027: 1}
    assert second.went_back({a: 1, b: 1, a_2027: 1}) == [(a, 1, 2)]
    assert second.went_back({a: 3, a_2027: 1}) == []  # newer, or a partner not offered
    key = X25519PrivateKey.generate()
    monkeypatch.setattr(state_module, "asdict", lambda state: {
        k: v for k, v in dataclasses.asdict(state).items() if k != "linked"})  # fmt: skip
    store_state(tmp_path, key, first)  # as written before versions were remembered
    monkeypatch.undo()
    assert load_state(tmp_path, key, "p", 1) == dataclasses.replace(first, linked={})


def test_concurrent_run_requests_cannot_exceed_the_rate(project_service: Service) -> None:
    """Eight analysts' requests at the same instant for the last run of the period: one
    is queued, seven get 429 (the project row is locked while runs are counted)."""
    s = project_service
    s.project_id = s.project(name="rush", members=["analyst"], run_rules={"runs_per_period": 1})
    analyst = s.as_(s.tokens["analyst"])
    barrier = threading.Barrier(8)
    codes: list[int] = []

    def post() -> None:
        barrier.wait()
        codes.append(s.http.post(f"/v1/projects/{s.project_id}/runs", headers=analyst).status_code)

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [202] + [429] * 7, codes
