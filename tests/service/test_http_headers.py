"""Every response carries HSTS, no-store, the other security headers and a request id;
the request id is the caller's when it is plain, and it is what the audit log records."""

from __future__ import annotations

import re

from service.api.middleware import SECURITY_HEADERS
from tests.service_fixtures import Service


def test_every_response_is_stamped_and_the_request_id_reaches_the_audit(
    project_service: Service,
) -> None:
    s = project_service
    responses = {
        "ok": s.http.get("/healthz"),
        "unauthorised": s.http.get("/v1/projects"),
        "forbidden": s.http.get("/v1/audit", headers=s.as_(s.tokens["housing"])),
        "not found": s.http.get("/v1/projects/nope", headers=s.as_(s.admin)),
        "invalid": s.http.post("/v1/tokens", headers=s.as_(s.admin), json={"role": "x"}),
        "nul refused": s.http.get("/v1/projects/a%00b", headers=s.as_(s.admin)),
        "page": s.http.get("/dpo/login"),
    }
    assert [r.status_code for r in responses.values()] == [200, 401, 403, 404, 422, 400, 200]
    for what, r in responses.items():
        for name, value in SECURITY_HEADERS.items():
            assert r.headers.get(name) == value, (what, name)
        assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"]), what

    mine = "case-4711-abc"
    r = s.http.get("/v1/audit", headers={**s.as_(s.tokens["housing"]), "X-Request-ID": mine})
    assert r.status_code == 403 and r.headers["x-request-id"] == mine
    events = s.http.get("/v1/audit", headers=s.as_(s.tokens["dpo"])).json()["events"]
    denial = next(e for e in events if e["action"] == "access.denied")
    assert denial["request_id"] == mine
    # an id that could smuggle text into logs is replaced, not echoed
    r = s.http.get("/healthz", headers={"X-Request-ID": "a b\tc" + "x" * 80})
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])
