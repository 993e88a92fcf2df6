"""Every role against every endpoint, plus missing, expired, revoked and foreign tokens.

Allowed callers get through authorisation (whatever the endpoint then says); everyone
else is refused with 401/403/404, and every refusal is an audit event.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from service.db.models import Principal
from tests.service_fixtures import Service

ROLES = ("admin", "partner", "analyst", "dpo")

# (method, path template, json body, roles allowed). {p} = the project id.
ENDPOINTS: list[tuple[str, str, object, set[str]]] = [
    ("POST", "/v1/tokens", {"name": "new-one", "role": "partner"}, {"admin"}),
    ("GET", "/v1/tokens", None, {"admin"}),
    ("DELETE", "/v1/tokens/nobody", None, {"admin"}),
    ("POST", "/v1/projects", {"name": "p2", "spec": {}}, {"admin"}),
    ("GET", "/v1/projects", None, {"admin", "partner", "analyst", "dpo"}),
    ("GET", "/v1/projects/{p}", None, {"admin", "partner", "analyst", "dpo"}),
    ("POST", "/v1/projects/{p}/members", {"principal": "analyst-x"}, {"admin"}),
    ("POST", "/v1/projects/{p}/submissions", None, {"partner"}),
    ("GET", "/v1/projects/{p}/submissions", None, {"admin", "partner", "analyst"}),
    ("POST", "/v1/projects/{p}/runs", {}, {"analyst"}),
    ("GET", "/v1/projects/{p}/runs", None, {"analyst"}),
    ("GET", "/v1/projects/{p}/runs/no-such-run", None, {"analyst"}),
    ("GET", "/v1/projects/{p}/runs/no-such-run/results", None, {"analyst"}),
]


@pytest.fixture
def matrix(project_service: Service) -> Service:
    s = project_service
    s.tokens["admin"] = s.admin
    s.tokens["partner"] = s.tokens["housing"]
    s.tokens["analyst-x"] = s.token("analyst-x", "analyst")
    s.tokens["analyst"] = s.tokens["analyst"]
    return s


def _call(s: Service, method: str, path: str, body: object, token: str | None) -> int:
    url = path.format(p=s.project_id)
    kwargs: dict[str, object] = {"headers": s.as_(token)}
    if body is not None:
        kwargs["json"] = body
    elif method == "POST":
        kwargs["content"] = b"PAR1 not really PAR1"
    return s.http.request(method, url, **kwargs).status_code  # type: ignore[arg-type]


def _denials(s: Service) -> int:
    return sum(1 for action, outcome in s.audit_actions() if outcome == "denied")


@pytest.mark.parametrize(
    ("method", "path", "body", "allowed"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS]
)
def test_role_matrix(
    matrix: Service, method: str, path: str, body: object, allowed: set[str]
) -> None:
    s = matrix
    for role in ROLES:
        before = _denials(s)
        status = _call(s, method, path, body, s.tokens[role])
        if role in allowed:
            assert status not in (401, 403), f"{role} refused on {method} {path}"
        else:
            assert status in (403, 404), f"{role} got {status} on {method} {path}"
            assert _denials(s) == before + 1, f"refusal of {role} on {method} {path} not audited"


@pytest.mark.parametrize(
    ("method", "path", "body", "allowed"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS]
)
def test_bad_tokens_are_refused_and_audited(
    matrix: Service, method: str, path: str, body: object, allowed: set[str]
) -> None:
    s = matrix
    expired = s.token("expired", "admin")
    revoked = s.token("revoked", "admin")
    state = s.http.app.state.pprl  # type: ignore[attr-defined]
    with state.db.transaction() as session:
        session.execute(
            update(Principal)
            .where(Principal.name == "expired")
            .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
        )
    assert s.http.delete("/v1/tokens/revoked", headers=s.as_(s.admin)).status_code == 200
    # the client's first failed authentication in a window is an audit event; the rest
    # of the window are counted and written as one access.denied_repeated event when it
    # closes (a flood must not grow the chain: see test_audit.py)
    for i, token in enumerate((None, "pprl_made-up", expired, revoked)):
        before = _denials(s)
        assert _call(s, method, path, body, token) == 401
        assert _denials(s) == before + (1 if i == 0 else 0)
    gate = state.denials
    assert gate is not None and sum(w.extra for w in gate._windows.values()) == 3


def test_non_members_get_404_as_if_the_project_did_not_exist(matrix: Service) -> None:
    s = matrix
    outsider = s.tokens["outsider"]
    for method, path in (
        ("GET", "/v1/projects/{p}"),
        ("GET", "/v1/projects/{p}/submissions"),
        ("POST", "/v1/projects/{p}/submissions"),
    ):
        missing = _call(s, method, path.replace("{p}", "no-such-project"), None, outsider)
        real = _call(s, method, path, None, outsider)
        assert real == missing == 404
    assert s.http.get("/v1/projects", headers=s.as_(outsider)).json() == []


def test_tokens_are_stored_only_as_digests(matrix: Service) -> None:
    s = matrix
    state = s.http.app.state.pprl  # type: ignore[attr-defined]
    with state.db.engine.connect() as conn:
        dump = " ".join(
            str(row)
            for table in ("principals", "audit_events")
            for row in conn.exec_driver_sql(f"SELECT * FROM {table}")
        )
    for token in s.tokens.values():
        assert token not in dump
