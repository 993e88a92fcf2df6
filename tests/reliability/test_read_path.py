"""The read path under load keeps its guarantees: every read of a release is audited
before it is answered (group commit), cached releases and audit pages show exactly what
is stored, and remembered tokens never outlive a revocation made here."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import anyio
from sqlalchemy import event, func, select, text, update

from service import context
from service.api.cache import Lru
from service.api.deps import AppState, audit_writer
from service.api.shared import SharedReads
from service.audit import Actor, record
from service.audit.review import AuditFilter, event_dict, page, page_json, verify
from service.audit.router import page_key
from service.auth.recent import RecentTokens
from service.db.models import AuditEvent, Principal, Result, Run
from tests.service_fixtures import Service

RELEASED = {
    "figures": {"persons.total": 120, "persons.both.housing+police": None, "persons.housing": 65},
    "suppressed": ["persons.both.housing+police"],
    "partners": ["housing", "police"],
}


def _state(s: Service) -> AppState:
    state: AppState = s.http.app.state.pprl  # type: ignore[attr-defined]
    return state


def _finished_run(s: Service) -> tuple[str, str]:
    """A run the analyst queued, finished as the worker finishes one (status done and
    its result row); returns its results path and the stored release's sha256."""
    analyst = s.as_(s.tokens["analyst"])
    r = s.http.post(f"/v1/projects/{s.project_id}/runs", headers=analyst, json={})
    assert r.status_code == 202, r.text
    run_id = r.json()["id"]
    stored = json.dumps(RELEASED, sort_keys=True)
    with _state(s).db.transaction() as session:
        run = session.get(Run, run_id)
        assert run is not None
        run.status = run.stage = "done"
        session.add(Result(run_id=run_id, released_json=stored, created_at=datetime.now(UTC)))
    return (
        f"/v1/projects/{s.project_id}/runs/{run_id}/results",
        hashlib.sha256(stored.encode()).hexdigest(),
    )


def _reads(s: Service) -> list[dict[str, Any]]:
    with _state(s).db.snapshot() as session:
        rows = session.execute(
            select(AuditEvent).where(AuditEvent.action == "results.read").order_by(AuditEvent.seq)
        ).scalars()
        return [{"seq": e.seq, "details": json.loads(e.details), "request_id": e.request_id}
                for e in rows]  # fmt: skip


def test_a_release_is_served_as_stored_with_its_etag_and_every_read_is_audited(
    project_service: Service,
) -> None:
    s = project_service
    path, sha = _finished_run(s)
    analyst = s.as_(s.tokens["analyst"])
    for _ in range(2):  # the second from memory: same bytes, same event
        r = s.http.get(path, headers=analyst)
        assert r.status_code == 200, r.text
        assert r.json() == RELEASED and r.headers["etag"] == f'"{sha}"'
    # compressed for a client that accepts it (httpx does by default), plain otherwise
    r = s.http.get(path, headers={**analyst, "Accept-Encoding": "gzip"})
    assert r.headers["content-encoding"] == "gzip" and r.json() == RELEASED
    plain = s.http.get(path, headers={**analyst, "Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.json() == RELEASED
    again = s.http.get(path, headers={**analyst, "If-None-Match": f'"{sha}"'})
    assert again.status_code == 304 and again.content == b""
    stale = s.http.get(path, headers={**analyst, "If-None-Match": '"' + "0" * 64 + '"'})
    assert stale.status_code == 200 and stale.json() == RELEASED
    reads = _reads(s)
    assert len(reads) == 6
    assert all(e["details"]["released_sha256"] == sha for e in reads)
    modified = [e["details"].get("not_modified", False) for e in reads]
    assert modified == [False] * 4 + [True, False]
    assert reads[0]["details"] == {"to": "analyst", "figures_count": 2, "suppressed": 1,
                                   "released_sha256": sha}  # fmt: skip
    # the cache never skips the checks: another partner's token is refused (and audited)
    outsider = s.http.get(path, headers=s.as_(s.tokens["outsider"]))
    assert outsider.status_code == 403
    assert ("access.denied", "denied") in s.audit_actions()
    # an analyst of another project: 404, as for a project that does not exist (audited)
    stranger = s.token("stranger", "analyst")
    assert s.http.get(path, headers=s.as_(stranger)).status_code == 404
    assert s.audit_actions().count(("access.denied", "denied")) == 2
    assert s.http.get(path.replace("/runs/", "/runs/x"), headers=analyst).status_code == 404
    assert len(_reads(s)) == 6


def test_concurrent_reads_are_each_audited_once_in_one_intact_chain(
    project_service: Service,
) -> None:
    s = project_service
    path, _sha = _finished_run(s)
    analyst = s.as_(s.tokens["analyst"])
    statuses: list[int] = []

    def read(i: int) -> None:
        r = s.http.get(path, headers={**analyst, "X-Request-ID": f"read-{i}"})
        statuses.append(r.status_code)

    threads = [threading.Thread(target=read, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 30
    reads = _reads(s)
    # each request's own id, once: the writer thread wrote them in their requests' context
    assert sorted(e["request_id"] for e in reads) == sorted(f"read-{i}" for i in range(30))
    with _state(s).db.snapshot() as session:
        assert verify(session, _state(s).audit_public_key).ok


def test_queued_events_share_commits_and_keep_their_order(service: Service) -> None:
    state = _state(service)
    commits: list[int] = []
    event.listen(state.db.engine, "commit", lambda _conn: commits.append(1))
    writer = audit_writer(state)

    async def many() -> None:
        await asyncio.gather(*(writer.record(actor=Actor("reader", "analyst"), action="test.read",
                                             subject=f"n{i:02d}") for i in range(50)))  # fmt: skip

    asyncio.run(many())
    with state.db.snapshot() as session:
        subjects = list(session.execute(select(AuditEvent.subject).where(
            AuditEvent.action == "test.read").order_by(AuditEvent.seq)).scalars())  # fmt: skip
    assert subjects == [f"n{i:02d}" for i in range(50)]  # in the order they were queued
    assert 1 <= len(commits) <= 5, len(commits)  # not one transaction per event


def test_a_batch_locks_the_head_once_and_chains_its_events_in_queue_order(
    service: Service,
) -> None:
    """Sixty reads queued together: each commit of the writer reads and moves the head
    once and inserts its events in one statement (it took the head once per event), and
    the events get consecutive numbers in queue order, each with its own request's id,
    times that never run backwards, and a chain that verifies."""
    state = _state(service)
    writer_sql: list[str] = []
    writer_commits: list[int] = []

    def on_statement(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if threading.current_thread().name == "audit-writer":
            writer_sql.append(" ".join(statement.split()).upper())

    def on_commit(_conn: Any) -> None:
        if threading.current_thread().name == "audit-writer":
            writer_commits.append(1)

    event.listen(state.db.engine, "before_cursor_execute", on_statement)
    event.listen(state.db.engine, "commit", on_commit)

    async def read(i: int) -> None:
        context.request_id.set(f"read-{i:02d}")  # this task's own context
        await audit_writer(state).record(actor=Actor("reader", "analyst"), action="test.batch",
                                         subject=f"n{i:02d}", details={"i": i})  # fmt: skip

    async def many() -> None:
        await asyncio.gather(*(read(i) for i in range(60)))

    asyncio.run(many())
    head_reads = [s for s in writer_sql if s.startswith("SELECT") and "FROM AUDIT_HEAD" in s]
    inserts = [s for s in writer_sql if s.startswith("INSERT INTO AUDIT_EVENTS")]
    assert 1 <= len(writer_commits) <= 5, len(writer_commits)
    assert len(head_reads) == len(inserts) == len(writer_commits), writer_sql
    with state.db.snapshot() as session:
        rows = session.execute(select(AuditEvent).where(AuditEvent.action == "test.batch")
                               .order_by(AuditEvent.seq)).scalars().all()  # fmt: skip
        assert verify(session, state.audit_public_key).ok
    assert [r.seq for r in rows] == list(range(rows[0].seq, rows[0].seq + 60))
    assert [(r.subject, r.request_id, json.loads(r.details)) for r in rows] == [
        (f"n{i:02d}", f"read-{i:02d}", {"i": i}) for i in range(60)
    ]
    assert [r.at for r in rows] == sorted(r.at for r in rows)


def test_a_bad_event_fails_only_its_own_request(service: Service) -> None:
    state = _state(service)
    writer = audit_writer(state)

    async def mixed() -> list[BaseException | None]:
        calls = [writer.record(actor=Actor("reader", "analyst"), action="test.mixed",
                               subject=f"n{i}", details={"bad": object()} if i == 2 else {})
                 for i in range(5)]  # fmt: skip
        return await asyncio.gather(*calls, return_exceptions=True)

    outcomes = asyncio.run(mixed())
    assert [type(o).__name__ for o in outcomes] == ["NoneType"] * 2 + ["TypeError"] + [
        "NoneType"
    ] * 2
    with state.db.snapshot() as session:
        subjects = list(session.execute(select(AuditEvent.subject).where(
            AuditEvent.action == "test.mixed").order_by(AuditEvent.seq)).scalars())  # fmt: skip
    assert subjects == ["n0", "n1", "n3", "n4"]


def test_the_audit_page_is_the_stored_events_and_follows_new_ones(
    project_service: Service,
) -> None:
    s = project_service
    dpo = s.as_(s.tokens["dpo"])
    first = s.http.get("/v1/audit?limit=5", headers=dpo)
    assert first.status_code == 200
    path, _sha = _finished_run(s)
    s.http.get(path, headers=s.as_(s.tokens["analyst"]))  # new events after the first page
    for query, f, limit, before in (
        ("limit=5", AuditFilter(), 5, None),
        ("limit=3&action=results.", AuditFilter(action="results."), 3, None),
        ("limit=4&before=6", AuditFilter(), 4, 6),
        ("limit=1000", AuditFilter(), 1000, None),
    ):
        body = s.http.get(f"/v1/audit?{query}", headers=dpo).json()
        with _state(s).db.snapshot() as session:
            events, total = page(session, f, limit=limit, before=before)
        assert body["events"] == events and body["total"] == total
        last = events[-1]["seq"]
        assert body["next_before"] == (last if len(events) == limit and last > 1 else None)
    newest = s.http.get("/v1/audit?limit=1", headers=dpo).json()["events"][0]
    assert newest["action"] == "results.read"


def test_every_shape_of_filter_pages_the_events_a_plain_filter_finds(service: Service) -> None:
    """The page's statements are built once per shape of filter (which fields are set)
    and their values bound at each request: every combination of filters, with and
    without ``before``, pages what filtering all stored events in Python finds, and so
    does the same shape again with other values (its statements kept from before)."""
    state = _state(service)
    with state.db.transaction() as session:
        for i in range(40):
            record(session, actor=Actor(("alice", "bob")[i % 2], "analyst"),
                   action=("results.read", "run.requested", "results.released")[i % 3],
                   project_id=("p1", "p2", None)[i // 2 % 3], subject=f"n{i}",
                   outcome=("ok", "denied")[i % 5 == 0])  # fmt: skip
    with state.db.snapshot() as session:
        stored = [event_dict(e) for e in session.execute(select(AuditEvent)).scalars()]
    ats = sorted(e["at"] for e in stored)
    fields = ("project_id", "actor", "action", "outcome", "since", "until", "before")
    known: Lru[tuple[int, str], bytes] = Lru(1000)

    def check(given: dict[str, Any], limit: int) -> None:
        f = AuditFilter(**{k: v for k, v in given.items() if k != "before"})
        found = [
            e for e in stored
            if all(e[k] == given[k] for k in ("project_id", "actor", "outcome") if k in given)
            and e["action"].startswith(given.get("action", ""))
            and ("since" not in given or e["at"] >= given["since"].isoformat())
            and ("until" not in given or e["at"] <= given["until"].isoformat())
        ]  # fmt: skip
        shown = [e for e in found if e["seq"] < given.get("before", 2**63)]
        shown = sorted(shown, key=lambda e: -e["seq"])[:limit]
        with state.db.snapshot() as session:
            body = json.loads(page_json(session, f, limit=limit, before=given.get("before"),
                                        known=known))  # fmt: skip
        assert body["events"] == shown, given
        assert body["total"] == len(found), given
        more = len(shown) == limit and shown[-1]["seq"] > 1
        assert body["next_before"] == (shown[-1]["seq"] if more else None), given

    for mask in range(2 ** len(fields)):
        names = [name for bit, name in enumerate(fields) if mask >> bit & 1]
        for values in (
            {"project_id": "p1", "actor": "alice", "action": "results.", "outcome": "ok",
             "since": datetime.fromisoformat(ats[5]), "until": datetime.fromisoformat(ats[35]),
             "before": 30},
            {"project_id": "p2", "actor": "bob", "action": "run.", "outcome": "denied",
             "since": datetime.fromisoformat(ats[0]), "until": datetime.fromisoformat(ats[20]),
             "before": 12},
        ):  # fmt: skip
            check({name: values[name] for name in names}, limit=7)


def test_a_page_shows_hashes_edited_in_the_database_as_stored(service: Service) -> None:
    """The page reads its (seq, hash) pairs as one text; a hash edited in the database
    into something that text cannot carry (a comma) is still shown as it is stored."""
    state = _state(service)
    with state.db.transaction() as session:
        for i in range(5):
            record(session, actor=Actor("a", "analyst"), action="test.edit", subject=f"n{i}")
    known: Lru[tuple[int, str], bytes] = Lru(100)
    with state.db.snapshot() as session:  # the events' JSON is kept under their hashes
        page_json(session, AuditFilter(), limit=3, before=None, known=known)
    with state.db.engine.begin() as conn:
        if state.db.is_sqlite:
            conn.execute(text("DROP TRIGGER audit_events_no_update"))
        else:
            conn.execute(text("DROP TRIGGER audit_events_append_only ON audit_events"))
        newest = conn.execute(select(func.max(AuditEvent.seq))).scalar_one()
        for seq, edited in ((newest, "edited, with a comma"), (newest - 1, "f" * 64)):
            conn.execute(update(AuditEvent).where(AuditEvent.seq == seq).values(hash=edited))
    with state.db.snapshot() as session:
        body = json.loads(page_json(session, AuditFilter(), limit=3, before=None, known=known))
        events, total = page(session, AuditFilter(), limit=3, before=None)
    assert [e["hash"] for e in body["events"][:2]] == ["edited, with a comma", "f" * 64]
    assert body["events"] == events and body["total"] == total


def test_identical_pages_asked_for_together_share_one_read_that_begins_after_them(
    service: Service,
) -> None:
    """Five requests for a page queued together get one read, which sees an event
    committed while they waited; a request that comes once a read began is not given
    that read (it could predate the request) but reads anew."""
    state = _state(service)
    shared: SharedReads[str, bytes] = SharedReads()
    reads: list[str] = []

    def read(name: str, begin: Callable[[], None], reading: threading.Event | None) -> bytes:
        begin()
        if reading is not None:  # hold this read once begun
            reading.set()
            time.sleep(0.2)
        reads.append(name)
        with state.db.snapshot() as session:
            return page_json(session, AuditFilter(), limit=1, before=None, known=Lru(10))

    def newest(body: bytes) -> str:
        return str(json.loads(body)["events"][0]["action"])

    def commit(action: str) -> None:
        with state.db.transaction() as session:
            record(session, actor=Actor("a", "analyst"), action=action)

    async def scenario() -> None:
        turn = asyncio.Event()  # the queued read's turn (a database slot, a thread)

        async def queued(begin: Callable[[], None]) -> bytes:
            await turn.wait()
            return await anyio.to_thread.run_sync(read, "queued", begin, None)

        together = [asyncio.ensure_future(shared.read("page", queued)) for _ in range(5)]
        await asyncio.sleep(0)
        await anyio.to_thread.run_sync(commit, "test.while_queued")
        turn.set()
        assert {newest(body) for body in await asyncio.gather(*together)} == {"test.while_queued"}
        assert reads == ["queued"]

        reading = threading.Event()

        async def held(begin: Callable[[], None]) -> bytes:
            return await anyio.to_thread.run_sync(read, "held", begin, reading)

        async def fresh(begin: Callable[[], None]) -> bytes:
            return await anyio.to_thread.run_sync(read, "fresh", begin, None)

        first = asyncio.ensure_future(shared.read("page", held))
        await anyio.to_thread.run_sync(reading.wait)
        await anyio.to_thread.run_sync(commit, "test.after_it_began")
        later = await shared.read("page", fresh)
        assert newest(later) == "test.after_it_began"
        await first
        assert sorted(reads) == ["fresh", "held", "queued"]

    asyncio.run(scenario())


def test_pages_are_shared_only_by_requests_for_the_same_bound_filter() -> None:
    """Equal instants in different time zones filter on different text: not one page."""
    utc = datetime(2026, 1, 1, 12, tzinfo=UTC)
    paris = utc.astimezone(timezone(timedelta(hours=1)))
    assert utc == paris
    assert page_key(AuditFilter(since=utc), 9, None) != page_key(AuditFilter(since=paris), 9, None)
    assert page_key(AuditFilter(actor="a"), 9, None) == page_key(AuditFilter(actor="a"), 9, None)
    assert page_key(AuditFilter(), 9, None) != page_key(AuditFilter(), 9, 5)


def test_a_token_revoked_here_is_refused_at_once(project_service: Service) -> None:
    s = project_service
    token = s.token("reader", "analyst", [s.project_id])
    assert s.http.get(f"/v1/projects/{s.project_id}/runs", headers=s.as_(token)).status_code == 200
    r = s.http.delete("/v1/tokens/reader", headers=s.as_(s.admin))
    assert r.status_code == 200, r.text
    refused = s.http.get(f"/v1/projects/{s.project_id}/runs", headers=s.as_(token))
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]


def test_a_token_revoked_elsewhere_is_refused_within_the_hold(project_service: Service) -> None:
    s = project_service
    state = _state(s)
    state.recent = RecentTokens(hold_seconds=0.5)
    token = s.token("reader", "analyst", [s.project_id])
    runs = f"/v1/projects/{s.project_id}/runs"
    assert s.http.get(runs, headers=s.as_(token)).status_code == 200
    # as another process would (`pprl admin token revoke` on the database): no hook here
    with state.db.transaction() as session:
        session.execute(
            update(Principal).where(Principal.name == "reader").values(revoked_at=datetime.now(UTC))
        )
    time.sleep(0.6)
    assert s.http.get(runs, headers=s.as_(token)).status_code == 401


def test_when_a_remembered_token_expires_one_check_serves_the_waiting_requests(
    service: Service,
) -> None:
    from fastapi.security import HTTPAuthorizationCredentials

    from service.api.deps import _caller
    from service.auth import Authenticated
    from service.auth.recent import generation
    from service.auth.tokens import digest
    from service.errors import Unauthorized

    state = _state(service)
    who = Authenticated("id-1", "reader", "analyst")
    credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials="pprl_example")
    checks: list[int] = []

    async def valid() -> Authenticated:
        since = generation()
        checks.append(1)
        await asyncio.sleep(0.05)
        state.recent.put(digest("pprl_example"), who, None, since)
        return who

    async def refused() -> Authenticated:
        checks.append(1)
        await asyncio.sleep(0.05)
        raise Unauthorized("this token has been revoked")

    async def many(check: Any) -> list[Any]:
        return await asyncio.gather(*(_caller(state, credentials, check) for _ in range(20)),
                                    return_exceptions=True)  # fmt: skip

    assert asyncio.run(many(valid)) == [who] * 20 and len(checks) == 1
    state.recent = RecentTokens()
    checks.clear()
    # a failed check is not shared: every request checks (and is refused, audited) itself
    outcomes = asyncio.run(many(refused))
    assert all(isinstance(o, Unauthorized) for o in outcomes) and len(checks) == 20


def test_a_read_grant_lasts_its_hold_and_no_longer(project_service: Service) -> None:
    """A release read is checked in the database at most once per hold per caller and
    run; a membership ended in the database (as another process would) ends the reads
    within the hold, and every read, remembered or not, is audited."""
    from service.auth.recent import RecentGrants
    from service.db.models import ProjectMember

    s = project_service
    state = _state(s)
    state.read_grants = RecentGrants(hold_seconds=0.5)
    path, _sha = _finished_run(s)
    analyst = s.as_(s.tokens["analyst"])
    before = len(_reads(s))
    assert [s.http.get(path, headers=analyst).status_code for _ in range(3)] == [200] * 3
    assert len(_reads(s)) == before + 3
    with state.db.transaction() as session:
        analyst_id = session.execute(
            select(Principal.id).where(Principal.name == "analyst")
        ).scalar_one()
        session.execute(
            ProjectMember.__table__.delete().where(ProjectMember.principal_id == analyst_id)
        )
    time.sleep(0.6)
    refused = s.http.get(path, headers=analyst)
    assert refused.status_code == 404, refused.text
    assert len(_reads(s)) == before + 3


def test_reads_waiting_together_for_a_grant_share_one_check(
    project_service: Service, monkeypatch: Any
) -> None:
    """When a caller's read grant is not held, its reads of the release that queue while
    the check waits for a database slot get that one check (each still audited); a
    refusal is not shared: each refused read is checked, and audited, by itself."""
    import httpx

    from service.auth.recent import RecentGrants
    from service.runs import router as runs_router

    s = project_service
    state = _state(s)
    path, _sha = _finished_run(s)
    analyst = s.as_(s.tokens["analyst"])
    checks: list[str] = []
    real = runs_router._release

    def counted(*args: Any) -> Any:
        checks.append(args[3])
        return real(*args)

    monkeypatch.setattr(runs_router, "_release", counted)

    async def together(who: dict[str, str]) -> list[int]:
        state.db_slots = anyio.CapacityLimiter(1)
        transport = httpx.ASGITransport(app=s.http.app)
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
            await client.get(path, headers=who)  # its token is remembered now
            state.read_grants = RecentGrants()  # but no grant is held
            checks.clear()
            holder = object()
            await state.db_slots.acquire_on_behalf_of(holder)  # the check waits for a slot
            reads = [asyncio.ensure_future(client.get(path, headers=who)) for _ in range(8)]
            await asyncio.sleep(0.2)
            state.db_slots.release_on_behalf_of(holder)
            return [r.status_code for r in await asyncio.gather(*reads)]

    before = len(_reads(s))
    assert asyncio.run(together(analyst)) == [200] * 8
    assert len(checks) == 1
    assert len(_reads(s)) == before + 1 + 8
    denials = len(_denials(s))
    assert asyncio.run(together(s.as_(s.tokens["outsider"]))) == [403] * 8  # not an analyst
    assert len(checks) == 1 + 8  # the shared check, then each for itself
    assert len(_denials(s)) == denials + 1 + 8


def _denials(s: Service) -> list[int]:
    with _state(s).db.snapshot() as session:
        return list(
            session.execute(
                select(AuditEvent.seq).where(AuditEvent.action == "access.denied")
            ).scalars()
        )


def test_a_bad_token_is_refused_before_any_route_opens_its_session(
    project_service: Service,
) -> None:
    """A flood of bad tokens must cost each route only the token check (and the counted
    denial), never the route's own transaction: every route takes as many connections
    for a refused token as the audit page, whose only database work is after the check."""
    s = project_service
    state = _state(s)
    checkouts: list[int] = []
    event.listen(state.db.engine, "checkout", lambda *_args: checkouts.append(1))
    bad = {"Authorization": "Bearer pprl_not-a-token"}
    p = s.project_id

    def taken(method: str, path: str, **body: Any) -> int:
        checkouts.clear()
        r = s.http.request(method, path, headers=bad, **body)
        assert r.status_code == 401, (path, r.status_code)
        return len(checkouts)

    taken("GET", "/v1/audit")  # the first denial of the window is written; later ones counted
    baseline = taken("GET", "/v1/audit")
    for method, path, body in [
        ("GET", "/v1/projects", {}),
        ("GET", f"/v1/projects/{p}", {}),
        ("POST", "/v1/projects", {"json": {"name": "x", "spec": {}, "members": []}}),
        ("POST", f"/v1/projects/{p}/members", {"json": {"name": "x"}}),
        ("GET", f"/v1/projects/{p}/submissions", {}),
        ("GET", "/v1/tokens", {}),
        ("DELETE", "/v1/tokens/somebody", {}),
        ("GET", f"/v1/projects/{p}/runs", {}),
    ]:
        assert taken(method, path, **body) == baseline, path
