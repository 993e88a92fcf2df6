"""Sealed end to end (issue 11): what the operator's API tier holds after a full flow,
the disclosure policy as part of the agreement, hostile files judged inside the enclave
under its limits, and the partner's client pinning the enclave key."""

from __future__ import annotations

import base64
import io
import json
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import create_engine, inspect, text

from linkage.spec import ROW_REF_COLUMN
from service.cli.pinning import load_pin
from service.cli.submit import SubmitRefused, submit_extract, wait_for_verdict
from service.crypto.envelope import format_fingerprint
from service.settings import Settings
from service.worker.intake import judge_in_child
from service.worker.loop import Worker
from tests.service_fixtures import Service

TOKEN_COLUMNS = (
    "t_nhs_number_exact",
    "t_surname_exact",
    "t_forename_exact",
    "t_dob_year",  # low-entropy: one-to-one with the age band if ever seen
    "t_postcode_district",  # low-entropy: one-to-one with the area if ever seen
    "t_sex_exact",
)


def _needles(extracts: dict[str, Path]) -> set[bytes]:
    """Sampled tokens in every form they could be stored in: raw, hex, base64."""
    found: set[bytes] = set()
    for name in ("housing", "police"):
        table = pq.read_table(extracts[name])
        for column in TOKEN_COLUMNS:
            values = {v for v in table.column(column).to_pylist() if v is not None}
            for token in list(values)[:300]:
                found |= {token, token.hex().encode(), base64.b64encode(token).rstrip(b"=")}
    return found


def _database_dump(url: str) -> bytes:
    """Every row of every table, as text (what an operator with the database sees)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            parts = []
            for table in inspect(conn).get_table_names():
                for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                    parts.append(repr(tuple(row)).encode())
            return b"\n".join(parts)
    finally:
        engine.dispose()


def _api_files(settings: Settings) -> dict[str, bytes]:
    """Everything in the data dir except the worker's own (keys, scratch, state)."""
    private = [settings.work_dir, settings.keys_dir, settings.data_dir / "enclave"]
    files = {}
    for path in settings.data_dir.rglob("*"):
        if path.is_file() and not any(path.is_relative_to(p) for p in private):
            files[str(path.relative_to(settings.data_dir))] = path.read_bytes()
    return files


def test_the_api_tier_never_holds_a_token_or_a_row_ref(
    project_service: Service, hashed_extracts: dict[str, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    s = project_service
    for partner in ("housing", "police"):
        sub = s.submit(s.tokens[partner], hashed_extracts[partner].read_bytes())
        assert sub["status"] == "accepted", sub
    analyst = s.as_(s.tokens["analyst"])
    run = s.http.post(f"/v1/projects/{s.project_id}/runs", headers=analyst, json={}).json()
    Worker(s.settings).run_once()
    state = s.http.get(f"/v1/projects/{s.project_id}/runs/{run['id']}", headers=analyst).json()
    assert state["status"] in ("done", "awaiting_approval"), state
    released = s.http.get(f"/v1/projects/{s.project_id}/runs/{run['id']}/results", headers=analyst)
    audit = s.http.get(
        "/v1/audit/export", headers=s.as_(s.tokens["dpo"]), params={"format": "jsonl"}
    )
    assert audit.status_code == 200

    needles = _needles(hashed_extracts)
    assert len(needles) > 1000
    haystacks = _api_files(s.settings)
    assert any(name.endswith(".sealed") for name in haystacks)  # the sealed payloads
    if s.settings.database_url is not None and "postgresql" in s.settings.url:
        haystacks["postgresql rows"] = _database_dump(s.settings.url)
    else:
        haystacks["sqlite rows"] = _database_dump(s.settings.url)
    out, err = capfd.readouterr()
    haystacks["logs"] = (out + err).encode()
    haystacks["results"] = released.content
    haystacks["audit export"] = audit.content
    for where, data in haystacks.items():
        leaked = [n for n in needles if n in data]
        assert not leaked, f"{len(leaked)} sampled tokens found in {where}"
        assert ROW_REF_COLUMN.encode() not in data, f"row_ref named in {where}"
    assert not list(s.settings.incoming_dir.glob("*"))


def test_policy_below_the_floor_is_refused(project_service: Service) -> None:
    s = project_service
    admin = s.as_(s.admin)
    for weak, field in (
        ({"suppress_below": 3, "round_to": 5}, "disclosure.suppress_below"),
        ({"suppress_below": 10, "round_to": 1}, "disclosure.round_to"),
    ):
        r = s.http.post(
            "/v1/projects",
            headers=admin,
            json={"name": "weak", "spec": s.http.get(f"/v1/projects/{s.project_id}",
                                                    headers=admin).json()["spec"],
                  "disclosure": weak},
        )  # fmt: skip
        assert r.status_code == 400 and field in r.json()["detail"], r.text
        assert "floor" in r.json()["detail"]
        r = s.http.put(f"/v1/projects/{s.project_id}/disclosure", headers=admin,
                       json={"disclosure": weak})  # fmt: skip
        assert r.status_code == 400 and field in r.json()["detail"], r.text
    # differential privacy on: the floor does not apply
    dp = {"suppress_below": 1, "round_to": 1, "dp": {"epsilon_per_release": 1, "epsilon_budget": 5}}
    r = s.http.put(f"/v1/projects/{s.project_id}/disclosure", headers=admin,
                   json={"disclosure": dp})  # fmt: skip
    assert r.status_code == 200, r.text
    # partners and analysts cannot change it
    r = s.http.put(f"/v1/projects/{s.project_id}/disclosure", headers=s.as_(s.tokens["housing"]),
                   json={"disclosure": {"suppress_below": 20}})  # fmt: skip
    assert r.status_code == 403


def test_a_policy_change_needs_every_partner_to_resubmit(
    project_service: Service, hashed_extracts: dict[str, Path]
) -> None:
    s = project_service
    admin, analyst = s.as_(s.admin), s.as_(s.tokens["analyst"])
    for partner in ("housing", "police"):
        assert s.submit(s.tokens[partner], hashed_extracts[partner].read_bytes())["current"]
    before = s.http.get(f"/v1/projects/{s.project_id}", headers=admin).json()["policy_fingerprint"]
    r = s.http.put(f"/v1/projects/{s.project_id}/disclosure", headers=admin,
                   json={"disclosure": {"suppress_below": 10, "round_to": 10}})  # fmt: skip
    assert r.status_code == 200, r.text
    after = r.json()["policy_fingerprint"]
    assert after != before
    assert ("project.policy_changed", "ok") in s.audit_actions()
    # an envelope still naming the old policy is refused with a sentence saying so
    stale = s.upload(s.tokens["housing"], hashed_extracts["police"].read_bytes(),
                     policy_fingerprint=before)  # fmt: skip
    assert stale.status_code == 422 and "policy has changed" in stale.json()["detail"]
    # the accepted extracts were agreed under the old policy: the enclave will not
    # release them under the new one
    run = s.http.post(f"/v1/projects/{s.project_id}/runs", headers=analyst, json={}).json()
    Worker(s.settings).run_once()
    failed = s.http.get(f"/v1/projects/{s.project_id}/runs/{run['id']}", headers=analyst).json()
    assert failed["status"] == "failed" and "disclosure policy" in failed["message"], failed


def _bomb(extract: Path) -> bytes:
    """A valid-looking extract whose a_area dictionary holds one 60 MB string for all rows."""
    table = pq.read_table(extract)
    meta = pq.read_metadata(extract).metadata
    huge = pa.array(["A" * (60 << 20)])
    area = pa.DictionaryArray.from_arrays(pa.array([0] * table.num_rows, pa.int32()), huge)
    table = table.set_column(table.schema.get_field_index("a_area"), "a_area", area)
    buffer = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(meta), buffer, compression="zstd",
                   compression_level=19, dictionary_pagesize_limit=128 << 20)  # fmt: skip
    return buffer.getvalue()


def test_dictionary_bomb_is_rejected_inside_its_memory_limit(
    project_service: Service, hashed_extracts: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """~60 KB on disk; one 60 MB string referenced by every row of a_area would expand to
    gigabytes if decoded. The enclave judges the dictionary, in a child under its limit."""
    s = project_service
    bomb = _bomb(hashed_extracts["housing"])
    from service.worker import intake

    verdicts: list[Any] = []
    real = intake.judge_in_child

    def recording(*args: Any) -> Any:
        verdicts.append(real(*args))
        return verdicts[-1]

    monkeypatch.setattr(intake, "judge_in_child", recording)
    assert len(bomb) < 200_000 and table_rows(bomb) * (60 << 20) > 5 << 30
    api = psutil.Process()
    rss_before = api.memory_info().rss
    r = s.upload(s.tokens["housing"], bomb)
    assert r.status_code == 202, r.text
    assert api.memory_info().rss - rss_before < 40 << 20  # the API streamed ~60 KB
    s.judge()
    sub = s.http.get(f"/v1/projects/{s.project_id}/submissions/{r.json()['id']}",
                     headers=s.as_(s.tokens["housing"])).json()  # fmt: skip
    assert sub["status"] == "rejected" and "a_area" in sub["reason"], sub
    # the analyst sees the verdict, not its reason (a reason can quote the extract's counts)
    seen = s.http.get(f"/v1/projects/{s.project_id}/submissions/{r.json()['id']}",
                      headers=s.as_(s.tokens["analyst"])).json()  # fmt: skip
    assert (seen["status"], seen["reason"]) == ("rejected", None), seen
    judged = verdicts[-1]
    limit_mb = s.settings.validation_memory_mb + 3 * len(bomb) / 2**20
    assert 0 < judged.peak_rss_mb < limit_mb, judged  # the child's own peak, under its limit
    assert s.audit_actions()[-1] == ("submission.rejected", "rejected")
    assert s.http.get("/healthz").status_code == 200


def table_rows(data: bytes) -> int:
    return int(pq.read_metadata(io.BytesIO(data)).num_rows)


def test_the_validator_child_is_held_to_its_limits(
    project_service: Service, hashed_extracts: dict[str, Path]
) -> None:
    """Under a limit too small for the bomb's 60 MB dictionary, the child fails at its
    limit and the worker records a rejection and carries on; a child over its time limit
    is killed."""
    s = project_service
    s.settings.validation_memory_mb = 256
    r = s.upload(s.tokens["housing"], _bomb(hashed_extracts["housing"]))
    assert r.status_code == 202, r.text
    s.judge()
    sub = s.http.get(f"/v1/projects/{s.project_id}/submissions/{r.json()['id']}",
                     headers=s.as_(s.tokens["housing"])).json()  # fmt: skip
    assert sub["status"] == "rejected" and "256 MB" in sub["reason"], sub
    assert s.http.get("/healthz").status_code == 200
    slow = s.settings.model_copy(update={"validation_timeout_seconds": 0.001})
    job = {"private_key": "00" * 32, "path": "/nonexistent", "envelope": "{}", "project": {},
           "max_identity_share": 0.01, "max_identity_floor": 50}  # fmt: skip
    verdict = judge_in_child(slow, job, 0)
    assert not verdict.ok and verdict.reason == "time_limit", verdict


class _TestClientAdapter:
    """The partner client's interface (request/upload/settings) over the in-process app."""

    def __init__(self, s: Service, token: str) -> None:
        self.s, self.headers = s, s.as_(token)
        self.settings = SimpleNamespace(url="https://testserver")

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        r = self.s.http.request(method, path, headers=self.headers, **kwargs)
        if r.status_code >= 400:
            raise RuntimeError(r.json()["detail"])
        return r.json()

    def upload(self, path: str, body: Any, size: int, on_progress: Any = None,
               headers: dict[str, str] | None = None) -> Any:  # fmt: skip
        content = b"".join(body())  # sealed as it is sent
        assert size == len(content)
        r = self.s.http.post(path, headers={**self.headers, **(headers or {})}, content=content)
        if r.status_code >= 400:
            raise RuntimeError(r.json()["detail"])
        return r.json()


def test_the_client_pins_the_enclave_key_and_the_policy(
    project_service: Service, hashed_extracts: dict[str, Path], tmp_path: Path
) -> None:
    s = project_service
    client = _TestClientAdapter(s, s.tokens["housing"])
    config = tmp_path / "pprl-config"
    extract = hashed_extracts["housing"]
    project = s.http.get(f"/v1/projects/{s.project_id}", headers=s.as_(s.admin)).json()
    real = project["enclave_key_fingerprint"]
    key = s.http.get("/v1/enclave/public-key").json()
    assert key["fingerprint"] == format_fingerprint(real)
    # first use: refused unless the partner confirms the fingerprint it was given
    with pytest.raises(SubmitRefused, match="first submission"):
        submit_extract(client, s.project_id, extract, config_dir=config)
    wrong = "ab" * 32
    with pytest.raises(SubmitRefused, match="not the one you were given"):
        submit_extract(client, s.project_id, extract, enclave_fingerprint=wrong, config_dir=config)
    assert not list(s.settings.data_dir.rglob("*.sealed"))  # nothing left the machine
    done = submit_extract(client, s.project_id, extract, config_dir=config,
                          enclave_fingerprint=format_fingerprint(real).upper())  # fmt: skip
    assert done.receipt["status"] == "received"
    pin = load_pin(config, s.project_id)
    assert pin is not None and pin.enclave_key_fingerprint == real
    # --wait: the verdict arrives once the enclave has judged it
    judge = threading.Timer(0.3, s.judge)
    judge.start()
    verdict = wait_for_verdict(client, done.receipt, timeout=120, poll=0.2)
    judge.join()
    assert verdict["status"] == "accepted"
    # a swapped enclave key (the saved pin no longer matches) is refused
    config_file = config / "projects" / f"{s.project_id}.json"
    saved = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**saved, "enclave_key_fingerprint": wrong}))
    with pytest.raises(SubmitRefused, match="which you confirmed before"):
        submit_extract(client, s.project_id, hashed_extracts["police"], config_dir=config)
    config_file.write_text(json.dumps(saved))
    # a changed policy is refused until the partner accepts the new fingerprint
    r = s.http.put(f"/v1/projects/{s.project_id}/disclosure", headers=s.as_(s.admin),
                   json={"disclosure": {"suppress_below": 10, "round_to": 10}})  # fmt: skip
    new = r.json()["policy_fingerprint"]
    with pytest.raises(SubmitRefused, match="policy has changed"):
        submit_extract(client, s.project_id, hashed_extracts["police"], config_dir=config)
    done = submit_extract(client, s.project_id, hashed_extracts["police"], config_dir=config,
                          accept_policy=new)  # fmt: skip
    assert done.receipt["policy_fingerprint"] == new
    assert load_pin(config, s.project_id).policy_fingerprint == new  # type: ignore[union-attr]
