"""Partners are organisations: rotating a token, or issuing a second one to the same
partner, keeps one partner in the results, the submissions and the audit (SQLite and
PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from linkage.encode import hash_file
from linkage.spec import load_spec
from service.audit import Actor
from service.auth import create_partner, create_principal, rotate_token
from service.db.models import Partner, Principal
from service.errors import Conflict, NotFound
from service.worker.loop import Worker
from tests.conftest import EXAMPLE_SPEC
from tests.service_fixtures import Service

OPERATOR = Actor("operator", "admin")


def _rehash(extracts: dict[str, Path], target: Path, batch_rows: int) -> bytes:
    """Housing's extract hashed again (other row groups, so other bytes; same rows)."""
    spec = load_spec(EXAMPLE_SPEC)
    hash_file(spec, extracts["secret"].read_bytes(), extracts["housing.csv"], target,
              batch_rows=batch_rows)  # fmt: skip
    return target.read_bytes()


def _released_partners(s: Service) -> list[str]:
    analyst = s.as_(s.tokens["analyst"])
    r = s.http.post(f"/v1/projects/{s.project_id}/runs", headers=analyst, json={})
    assert r.status_code == 202, r.text
    run_id = r.json()["id"]
    assert Worker(s.settings).run_once() == run_id
    state = s.http.get(f"/v1/projects/{s.project_id}/runs/{run_id}", headers=analyst).json()
    assert state["status"] == "done", state
    released = s.http.get(
        f"/v1/projects/{s.project_id}/runs/{run_id}/results", headers=analyst
    ).json()
    return list(released["partners"])


def test_rotation_and_a_second_token_keep_one_partner(
    project_service: Service, hashed_extracts: dict[str, Path], tmp_path: Path
) -> None:
    s = project_service
    db = s.http.app.state.pprl.db  # type: ignore[attr-defined]
    housing = hashed_extracts["housing"]
    first = s.submit(s.tokens["housing"], housing.read_bytes())
    assert first["status"] == "accepted", first
    assert s.submit(s.tokens["police"], hashed_extracts["police"].read_bytes())["status"] == (
        "accepted"
    )
    assert _released_partners(s) == ["housing", "police"]

    # rotate: the old token stops working at once, the partner and its history stay
    with db.transaction() as session:
        row, new_token = rotate_token(session, name_or_id="housing", by=OPERATOR)
        assert row.partner_id is not None
    old = s.tokens["housing"]
    assert s.http.get(f"/v1/projects/{s.project_id}", headers=s.as_(old)).status_code == 401
    s.tokens["housing"] = new_token
    second = s.submit(new_token, _rehash(hashed_extracts, tmp_path / "v2.parquet", 100))
    assert second["status"] == "accepted" and second["partner"] == "housing", second
    assert second["version"] == first["version"] + 1
    assert _released_partners(s) == ["housing", "police"]

    # a second token of the same organisation (another machine, or after a revocation)
    with db.transaction() as session:
        _, other = create_principal(session, name="housing-laptop", role="partner", by=OPERATOR,
                                    partner="housing", projects=[s.project_id])  # fmt: skip
    third = s.submit(other, _rehash(hashed_extracts, tmp_path / "v3.parquet", 77))
    assert third["status"] == "accepted" and third["partner"] == "housing", third
    assert _released_partners(s) == ["housing", "police"]

    with db.transaction() as session:
        orgs = session.execute(select(Partner.name).order_by(Partner.name)).scalars().all()
        members = session.execute(
            select(Principal.name).join(Partner, Partner.id == Principal.partner_id)
            .where(Partner.name == "housing").order_by(Principal.name)
        ).scalars().all()  # fmt: skip
    assert "housing-laptop" not in orgs and {"housing", "police"} <= set(orgs)
    assert members == ["housing", "housing-laptop"]
    events = s.http.get("/v1/audit", headers=s.as_(s.tokens["dpo"])).json()["events"]
    received = [e["details"]["partner"] for e in events if e["action"] == "submission.received"]
    assert received.count("housing") == 3 and "housing-laptop" not in received
    assert [e["subject"] for e in events if e["action"] == "token.rotated"] == ["housing"]
    # the DPO's project page lists the three submissions under the one organisation
    s.sign_in_dpo()
    page = s.http.get(f"/dpo/projects/{s.project_id}").text
    assert page.count("<tr><td>housing</td>") == 3 and "<td>housing-laptop</td>" not in page
    # ... and its members as organisations: housing once, with its two tokens
    members = page.split("<dt>Members</dt>", 1)[1].split("</dd>", 1)[0]
    assert "housing (partner, 2 tokens)" in members and "housing-laptop" not in members
    # the admin's token list says which organisation each token belongs to
    listed = {t["name"]: t["partner"] for t in s.http.get("/v1/tokens", headers=s.as_(s.admin)).json()}
    assert listed["housing-laptop"] == "housing" and listed["police"] == "police"
    assert listed["analyst"] is None


def test_partner_organisations_and_refusals(service: Service) -> None:
    db = service.http.app.state.pprl.db  # type: ignore[attr-defined]
    pid = service.project()
    with db.transaction() as session:
        org = create_partner(session, name="adult social care", by=OPERATOR, projects=[pid])
        row, _ = create_principal(session, name="asc-2026", role="partner", by=OPERATOR,
                                  partner="adult social care")  # fmt: skip
        assert row.partner_id == org.id
    with db.transaction() as session, pytest.raises(Conflict):
        create_partner(session, name="adult social care", by=OPERATOR)
    with db.transaction() as session, pytest.raises(NotFound, match="pprl admin partner add"):
        create_principal(session, name="x", role="partner", by=OPERATOR, partner="nobody")
    with db.transaction() as session:
        from service.errors import BadRequest

        with pytest.raises(BadRequest, match="only to tokens with role partner"):
            create_principal(session, name="y", role="analyst", by=OPERATOR, partner="adult social care")
    # the token joined the organisation's project without being named a member
    token_row_id = row.id
    with db.transaction() as session:
        from service.auth import is_member

        assert is_member(session, pid, token_row_id)
