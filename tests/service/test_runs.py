"""Runs end to end in process: queue as analyst, the enclave worker links, results are
released under disclosure control and every release is audited."""

from __future__ import annotations

import json
from pathlib import Path

from service.worker.loop import Worker
from tests.service_fixtures import Service


def _submit_both(s: Service, extracts: dict[str, Path]) -> None:
    for partner in ("housing", "police"):
        assert s.upload(s.tokens[partner], extracts[partner].read_bytes()).status_code == 202


def test_run_releases_only_disclosure_controlled_aggregates(
    project_service: Service, hashed_extracts: dict[str, Path]
) -> None:
    s = project_service
    _submit_both(s, hashed_extracts)
    analyst = s.as_(s.tokens["analyst"])
    r = s.http.post(f"/v1/projects/{s.project_id}/runs", headers=analyst, json={})
    assert r.status_code == 202, r.text
    run_id = r.json()["id"]
    assert (
        s.http.get(
            f"/v1/projects/{s.project_id}/runs/{run_id}/results", headers=analyst
        ).status_code
        == 409
    )
    worker = Worker(s.settings)
    assert worker.run_once() == run_id
    assert worker.run_once() is None
    state = s.http.get(f"/v1/projects/{s.project_id}/runs/{run_id}", headers=analyst).json()
    assert state["status"] == "done" and state["progress"] == 1.0, state
    released = s.http.get(
        f"/v1/projects/{s.project_id}/runs/{run_id}/results", headers=analyst
    ).json()
    figures = released["figures"]
    assert released["partners"] == ["housing", "police"]
    for name, value in figures.items():
        if value is None or name.endswith("mean_contacts"):
            continue
        assert value == 0 or (value >= 8 and value % 5 == 0), (name, value)
    assert figures["persons.total"] > 0 and figures["persons.both.housing+police"] is not None
    # nothing record-level: no ids, pairs, tokens or weights per record
    body = json.dumps(released)
    for word in ("unique_id", "cluster_id", "row_ref", "t_nhs_number", "match_probability"):
        assert word not in body
    actions = s.audit_actions()
    assert ("run.requested", "ok") in actions and ("results.released", "ok") in actions
    assert ("results.read", "ok") in actions
    # the release lists the figures; a read names that release by digest, not again by name
    events = s.http.get("/v1/audit", headers=s.as_(s.tokens["dpo"])).json()["events"]
    release = next(e for e in events if e["action"] == "results.released")["details"]
    read = next(e for e in events if e["action"] == "results.read")["details"]
    shown = sorted(k for k, v in figures.items() if v is not None)
    assert release["figures"] == shown and read["figures_count"] == len(shown)
    assert read["released_sha256"] == release["released_sha256"]
    assert "figures" not in read and read["to"] == "analyst"
    s.sign_in_dpo()
    page = s.http.get(f"/dpo/projects/{s.project_id}").text
    assert f"{len(shown)}: the run's released figures" in page
    assert f"release sha256 {release['released_sha256'][:12]}" in page
    # no temporary directory is left behind
    assert not list((s.settings.work_dir).glob("run-*"))


def test_run_without_submissions_fails_with_a_safe_message(project_service: Service) -> None:
    s = project_service
    analyst = s.as_(s.tokens["analyst"])
    run_id = s.http.post(f"/v1/projects/{s.project_id}/runs", headers=analyst).json()["id"]
    Worker(s.settings).run_once()
    state = s.http.get(f"/v1/projects/{s.project_id}/runs/{run_id}", headers=analyst).json()
    assert state["status"] == "failed" and "no current submissions" in state["message"]
    assert ("run.failed", "failed") in s.audit_actions()
