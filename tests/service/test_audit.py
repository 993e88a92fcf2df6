"""The tamper-evident audit log: append-only, hash-chained, signed, verifiable offline."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from service.audit import Actor, record
from service.audit.review import parse_export, verify, verify_stream
from service.db import Database
from service.db.models import AuditCheckpoint, AuditEvent
from service.settings import Settings
from tests.service_fixtures import Service


def _db(s: Service) -> Database:
    return s.http.app.state.pprl.db  # type: ignore[attr-defined,no-any-return]


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
    service: Service, tmp_path: Path
) -> None:
    s = service
    s.token("dpo", "dpo")
    _events(s, 7)
    with _db(s).transaction() as session:  # a signed checkpoint on demand
        from service.audit.checkpoints import sign_checkpoint

        sign_checkpoint(session, s.http.app.state.pprl.audit_signing_key, manual=True)  # type: ignore[attr-defined]
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

    from service.audit.checkpoints import sign_checkpoint

    _events(service, 4)
    with _db(service).transaction() as session:
        sign_checkpoint(session, Ed25519PrivateKey.generate(), manual=True)  # not the service's key
    report = _report(service)
    assert not report.ok and "invalid signature" in (report.reason or "")


def test_rewriting_the_whole_chain_is_caught_by_a_signed_checkpoint(service: Service) -> None:
    from service.audit.chain import event_hash
    from service.audit.checkpoints import sign_checkpoint

    state = service.http.app.state.pprl  # type: ignore[attr-defined]
    _events(service, 4)
    with state.db.transaction() as session:
        sign_checkpoint(session, state.audit_signing_key, manual=True)
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
    settings: Settings, service: Service
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
    assert checkpoints  # the API process signs every 100 events
    db.dispose()
