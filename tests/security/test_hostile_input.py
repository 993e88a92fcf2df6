"""Hostile uploads and specs: always one 4xx with a clear message, nothing stored, the
service still healthy afterwards."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.service_fixtures import Service

HOSTILE = settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _parquet(table: pa.Table, metadata: dict[bytes, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(metadata) if metadata else table, buf)
    return buf.getvalue()


names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=30)
cells = st.one_of(
    st.none(), st.text(max_size=200), st.binary(max_size=64), st.integers(-(2**63), 2**63 - 1)
)


@st.composite
def hostile_tables(draw: st.DrawFn) -> bytes:
    width = draw(st.integers(1, 6))
    rows = draw(st.integers(0, 20))
    columns = draw(st.lists(names, min_size=width, max_size=width, unique=True))
    data = {}
    for column in columns:
        kind = draw(st.sampled_from(["text", "binary", "int", "fixed16"]))
        if kind == "text":
            data[column] = pa.array(
                draw(st.lists(st.text(max_size=100) | st.none(), min_size=rows, max_size=rows)),
                pa.string(),
            )
        elif kind == "binary":
            data[column] = pa.array(
                draw(st.lists(st.binary(max_size=40), min_size=rows, max_size=rows)), pa.binary()
            )
        elif kind == "int":
            data[column] = pa.array(
                draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=rows, max_size=rows)),
                pa.int64(),
            )
        else:
            data[column] = pa.array(
                draw(st.lists(st.binary(min_size=16, max_size=16), min_size=rows, max_size=rows)),
                pa.binary(16),
            )
    metadata = draw(st.none() | st.just({b"pprl.manifest": draw(st.binary(max_size=300))}))
    return _parquet(pa.table(data), metadata)


uploads = st.one_of(
    st.binary(max_size=2000),
    st.binary(max_size=500).map(lambda b: b"PAR1" + b + b"PAR1"),
    hostile_tables(),
    hostile_tables().map(lambda b: b[: max(len(b) - 20, 0)]),
    hostile_tables().map(lambda b: b[:-8] + bytes(4) + b"PAR1"),
)


def _nothing_stored(s: Service) -> None:
    assert not list(s.settings.data_dir.rglob("*.sealed")) and not list(
        s.settings.data_dir.rglob("*.part")
    )
    subs = s.http.get(f"/v1/projects/{s.project_id}/submissions", headers=s.as_(s.admin)).json()
    assert all(x["status"] == "rejected" for x in subs), subs
    assert s.http.get("/healthz").status_code == 200


def _roomy_project(s: Service) -> None:
    """A project whose rate limit does not stop a fuzzer's many resubmissions."""
    s.project_id = s.project(
        name="hostile", members=["housing"], run_rules={"resubmissions_per_period": 1000}
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


envelope_headers = st.one_of(
    st.none(),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300),
    st.binary(max_size=300).map(_b64),
    st.dictionaries(st.text(max_size=20), st.text(max_size=20) | st.integers(), max_size=14).map(
        lambda d: _b64(json.dumps(d).encode())
    ),
)


def test_hostile_envelopes_get_one_clear_4xx(project_service: Service) -> None:
    """Whatever the header and body, the API answers one sentence and stores nothing."""
    s = project_service

    @HOSTILE
    @given(envelope_headers, st.binary(max_size=2000))
    def attempt(header: str | None, body: bytes) -> None:
        headers = {**s.as_(s.tokens["housing"]), "Content-Type": "application/vnd.pprl.sealed"}
        if header is not None:
            headers["X-PPRL-Envelope"] = header
        r = s.http.post(f"/v1/projects/{s.project_id}/submissions", headers=headers, content=body)
        assert 400 <= r.status_code < 500, (r.status_code, r.text)
        detail = r.json()["detail"]
        assert isinstance(detail, str) and 10 < len(detail) < 600

    attempt()
    _nothing_stored(s)


def test_hostile_extracts_are_rejected_by_the_enclave(project_service: Service) -> None:
    """Properly sealed, hostile inside: received, then rejected with one clear reason."""
    s = project_service
    _roomy_project(s)

    @settings(HOSTILE, max_examples=12)
    @given(uploads)
    def attempt(body: bytes) -> None:
        r = s.upload(s.tokens["housing"], body)
        if r.status_code == 409:  # the same hostile bytes drawn twice
            return
        assert r.status_code == 202, (r.status_code, r.text)
        s.judge()
        sub = s.http.get(
            f"/v1/projects/{s.project_id}/submissions/{r.json()['id']}",
            headers=s.as_(s.tokens["housing"]),
        ).json()
        assert sub["status"] == "rejected", sub
        assert isinstance(sub["reason"], str) and 10 < len(sub["reason"]) < 600

    attempt()
    _nothing_stored(s)


def test_decompression_bomb_is_rejected(project_service: Service) -> None:
    s = project_service
    bomb = _parquet(
        pa.table({"t_nhs_number_exact": pa.repeat(pa.scalar(0, pa.int64()), 20_000_000)})
    )
    assert len(bomb) < 2_000_000
    assert s.upload(s.tokens["housing"], bomb).status_code == 202
    s.judge()
    (sub,) = s.http.get(f"/v1/projects/{s.project_id}/submissions", headers=s.as_(s.admin)).json()
    assert sub["status"] == "rejected" and "declares far more data" in sub["reason"]
    _nothing_stored(s)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.integers(min_value=10**30, max_value=10**40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=30,
)


def _deep(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"a": [value]}
    return value


def test_hostile_specs_get_one_clear_4xx(project_service: Service) -> None:
    s = project_service
    base = s.http.get(f"/v1/projects/{s.project_id}", headers=s.as_(s.admin)).json()["spec"]

    @HOSTILE
    @given(
        st.dictionaries(
            st.sampled_from(
                [
                    "version",
                    "name",
                    "reference_date",
                    "identifiers",
                    "attributes",
                    "encoding",
                    "matching",
                    "disclosure",
                    "extra",
                ]
            ),
            json_values,
            max_size=5,
        )
    )
    def attempt(changes: dict[str, Any]) -> None:
        spec = {**base, **changes}
        r = s.http.post(
            "/v1/projects", headers=s.as_(s.admin), json={"name": "hostile", "spec": spec}
        )
        assert r.status_code in (201, 400, 409, 422), (r.status_code, r.text)
        if r.status_code != 201:
            assert isinstance(r.json()["detail"], str)

    attempt()
    for spec in (
        {**base, "identifiers": [{"name": "x", "type": "postcde"}]},
        _deep(200),
        {**base, "matching": {"threshold": 10**400}},
        {**base, "encoding": {"token_bits": -1}},
    ):
        body = json.dumps({"name": "hostile-2", "spec": spec})
        r = s.http.post(
            "/v1/projects",
            headers={**s.as_(s.admin), "Content-Type": "application/json"},
            content=body,
        )
        assert 400 <= r.status_code < 500, r.text
    assert s.http.get("/healthz").status_code == 200


def test_nul_characters_are_refused_at_the_edge_on_both_databases(
    project_service: Service,
) -> None:
    """PostgreSQL cannot hold U+0000: without this the same request was a 500 on
    PostgreSQL and silently stored on SQLite (found by the schemathesis run)."""
    s = project_service
    admin = s.as_(s.admin)
    before = len(s.http.get("/v1/tokens", headers=admin).json())
    r = s.http.post("/v1/tokens", headers=admin, json={"name": "ho\x00using", "role": "partner"})
    assert r.status_code == 422 and "name: text may not contain NUL" in r.json()["detail"]
    r = s.http.post(
        "/v1/projects",
        headers=admin,
        json={"name": "p", "purpose": "x", "spec": {"identifiers": [{"name": "a\x00"}]}},
    )
    assert r.status_code == 422 and "spec.identifiers[0].name" in r.json()["detail"]
    for url in ("/v1/projects/fsu%00", "/v1/audit?actor=a%00b", "/v1/tokens/%00/revoke"):
        r = s.http.get(url, headers=admin)
        assert r.status_code == 400 and "NUL" in r.json()["detail"], (url, r.text)
    assert len(s.http.get("/v1/tokens", headers=admin).json()) == before
    assert s.http.get("/healthz").status_code == 200


def test_out_of_range_page_numbers_are_a_4xx_or_clamped(project_service: Service) -> None:
    """schemathesis found ``?before=2**63`` overflowing SQLite's integer (a 500)."""
    s = project_service
    dpo = s.as_(s.tokens["dpo"])
    r = s.http.get("/v1/audit", params={"before": 2**63}, headers=dpo)
    assert r.status_code == 422 and "before" in r.json()["detail"]
    assert s.http.get("/v1/audit", params={"before": 2**63 - 1}, headers=dpo).status_code == 200
    s.sign_in_dpo()
    for before in (2**70, -(2**70)):
        assert s.http.get("/dpo", params={"before": before}).status_code == 200


def test_refusals_of_very_long_urls_are_still_audited(project_service: Service) -> None:
    """schemathesis found a 200+ character project reference turning the audited refusal
    into a 500 on PostgreSQL (the event's subject overflowed its column)."""
    s = project_service
    ref = "0" * 5000
    assert s.http.post(f"/v1/projects/{ref}/runs").status_code == 401
    r = s.http.post(f"/v1/projects/{ref}/runs", headers=s.as_(s.tokens["analyst"]))
    assert r.status_code == 404
    events = s.http.get("/v1/audit", headers=s.as_(s.tokens["dpo"])).json()["events"]
    denials = [e for e in events if e["action"] == "access.denied"][:2]
    assert len(denials) == 2
    for e in denials:
        assert e["subject"] is None or len(e["subject"]) <= 200
        assert len(e["details"]["reason"]) <= 500
    assert any(e["subject"] and e["subject"].endswith("…") for e in denials)
    assert s.http.get("/v1/audit/verify", headers=s.as_(s.tokens["dpo"])).json()["ok"]
