"""DPO pages: only DPO tokens sign in, forms need their CSRF token, forged or absent
session cookies lead back to the sign-in page."""

from __future__ import annotations

from tests.service_fixtures import Service


def test_only_dpo_tokens_sign_in_and_forms_need_csrf(project_service: Service) -> None:
    s = project_service
    csrf = s.login_csrf()
    for token in (s.admin, s.tokens["analyst"], s.tokens["housing"], "pprl_nonsense"):
        r = s.http.post("/dpo/login", data={"token": token, "csrf": csrf}, follow_redirects=False)
        assert r.status_code == 200 and "not a valid DPO token" in r.text
        csrf = s.login_csrf()
    assert s.audit_actions().count(("dpo.sign_in", "denied")) == 4
    # a forged form (no matching CSRF nonce) does not sign anyone in
    r = s.http.post(
        "/dpo/login", data={"token": s.tokens["dpo"], "csrf": "forged"}, follow_redirects=False
    )
    assert r.status_code == 200 and "form expired" in r.text
    csrf = s.login_csrf()
    r = s.http.post(
        "/dpo/login", data={"token": s.tokens["dpo"], "csrf": csrf}, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"] == "/dpo"
    cookie = r.headers["set-cookie"]
    assert (
        "HttpOnly" in cookie
        and "Secure" in cookie
        and "SameSite=strict" in cookie.replace("Strict", "strict")
    )
    page = s.http.get("/dpo")
    assert page.status_code == 200 and "Audit chain verified" in page.text
    # sign-out without the session's CSRF token is refused
    assert s.http.post("/dpo/logout", data={"csrf": "nope"}).status_code == 403


def test_forged_or_missing_session_goes_to_sign_in(project_service: Service) -> None:
    s = project_service
    s.http.cookies.clear()
    r = s.http.get("/dpo", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/dpo/login"
    s.http.cookies.set(
        "pprl_dpo", "someone.9999999999.forgedmac", domain="testserver.local", path="/dpo"
    )
    r = s.http.get("/dpo", follow_redirects=False)
    assert r.status_code == 303
    r = s.http.get(f"/dpo/projects/{s.project_id}", follow_redirects=False)
    assert r.status_code == 303


def test_project_page_names_requesters_is_audited_and_writes_nothing_else(
    project_service: Service,
) -> None:
    from sqlalchemy import select

    from service.db.models import Run

    s = project_service
    run_id = s.http.post(
        f"/v1/projects/{s.project_id}/runs", headers=s.as_(s.tokens["analyst"])
    ).json()["id"]
    s.sign_in_dpo()
    page = s.http.get(f"/dpo/projects/{s.project_id}")
    assert page.status_code == 200
    assert "analyst" in page.text and "Audit chain verified" in page.text
    assert s.audit_actions()[-1] == ("dpo.project_viewed", "ok")
    # the page shows the requester's name; the stored run keeps the principal's id
    with s.http.app.state.pprl.db.snapshot() as session:  # type: ignore[attr-defined]
        run = session.execute(select(Run).where(Run.id == run_id)).scalar_one()
        assert run.requested_by != "analyst" and len(run.requested_by) == 36
    assert s.http.get("/v1/audit/verify", headers=s.as_(s.tokens["dpo"])).json()["ok"]
