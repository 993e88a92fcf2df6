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


def _replay(s: Service, cookie: str) -> int:
    s.http.cookies.clear()
    s.http.cookies.set("pprl_dpo", cookie, domain="testserver.local", path="/dpo")
    return s.http.get("/dpo", follow_redirects=False).status_code


def _csrf_of_page(s: Service) -> str:
    import re

    match = re.search(r'name="csrf" value="([^"]+)"', s.http.get("/dpo").text)
    assert match
    return match.group(1)


def test_a_cookie_replayed_after_sign_out_is_refused(project_service: Service) -> None:
    s = project_service
    s.sign_in_dpo()
    cookie = s.http.cookies.get("pprl_dpo", path="/dpo")
    assert cookie and _replay(s, cookie) == 200
    r = s.http.post("/dpo/logout", data={"csrf": _csrf_of_page(s)}, follow_redirects=False)
    assert r.status_code == 303
    assert _replay(s, cookie) == 303  # the session ended on the server, not just in a browser
    assert ("dpo.sign_out", "ok") in s.audit_actions()


def test_a_cookie_after_the_token_expired_is_refused(project_service: Service) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from service.db.models import Principal

    s = project_service
    s.sign_in_dpo()
    cookie = s.http.cookies.get("pprl_dpo", path="/dpo")
    assert cookie and _replay(s, cookie) == 200
    with s.http.app.state.pprl.db.transaction() as session:  # type: ignore[attr-defined]
        session.execute(
            update(Principal)
            .where(Principal.name == "dpo")
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert _replay(s, cookie) == 303
    assert s.http.get("/v1/audit", headers=s.as_(s.tokens["dpo"])).status_code == 401


def test_a_session_never_outlives_its_token(project_service: Service) -> None:
    r = project_service.http.post(
        "/v1/tokens",
        headers=project_service.as_(project_service.admin),
        json={"name": "short-dpo", "role": "dpo", "expires_days": 0.01},  # 864 s
    )
    s = project_service
    s.sign_in_dpo(r.json()["token"])
    cookie = s.http.cookies.get("pprl_dpo", path="/dpo")
    from service.db.models import DpoSession

    with s.http.app.state.pprl.db.snapshot() as session:  # type: ignore[attr-defined]
        row = session.query(DpoSession).one()
        lifetime = (row.expires_at - row.created_at).total_seconds()
    assert cookie and 0 < lifetime <= 865


def test_the_sign_in_page_shows_no_caller_text(project_service: Service) -> None:
    s = project_service
    evil = "Your account is locked. Call 0800 EVIL to unlock"
    page = s.http.get("/dpo/login", params={"error": evil})
    assert page.status_code == 200 and "EVIL" not in page.text and "locked" not in page.text
    known = s.http.get("/dpo/login", params={"error": "invalid"})
    assert "not a valid DPO token" in known.text


def test_the_page_button_signs_a_checkpoint(project_service: Service) -> None:
    import threading

    from service.audit.signer import Signer
    from service.crypto import load_signing_key

    s = project_service
    state = s.http.app.state.pprl  # type: ignore[attr-defined]
    stop = threading.Event()
    thread = Signer(state.db, load_signing_key(s.settings.audit_signing_key_path)).start(stop)
    try:
        s.sign_in_dpo()
        assert s.http.post("/dpo/checkpoint", data={"csrf": "forged"}).status_code == 403
        r = s.http.post("/dpo/checkpoint", data={"csrf": _csrf_of_page(s)})
        assert r.status_code == 200 and "checkpoint of the current head was signed" in r.text
    finally:
        stop.set()
        thread.join(timeout=10)
    assert ("audit.checkpoint_requested", "ok") in s.audit_actions()
