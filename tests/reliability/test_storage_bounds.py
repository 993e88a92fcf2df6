"""Storage a partner can push is bounded: a quota per partner and project (superseded
copies included, refused before the body is read), and superseded blobs purged after a
grace period, each purge audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import update

from service.audit import Actor
from service.db.models import Submission
from service.retention import held_bytes, purge_expired
from tests.service_fixtures import Service


def test_quota_refuses_then_a_grace_purge_frees_the_space(
    project_service: Service, hashed_extracts: dict[str, Path]
) -> None:
    s = project_service
    state = s.http.app.state.pprl  # type: ignore[attr-defined]
    first = s.submit(s.tokens["housing"], hashed_extracts["housing"].read_bytes())
    assert first["status"] == "accepted", first
    with state.db.snapshot() as session:
        sub = session.get(Submission, first["id"])
        assert sub is not None
        held = held_bytes(session, s.project_id, sub.partner_id)
        blob = s.settings.data_dir / sub.blob_path
    assert held == sub.bytes > 0 and blob.exists()
    s.settings.partner_quota_bytes = held + 1000  # room for the first, not for another
    r = s.upload(s.tokens["housing"], hashed_extracts["police"].read_bytes())
    assert r.status_code == 413 and "quota" in r.json()["detail"], r.text
    assert any(a[0].startswith("submission.") and a[1] == "rejected" for a in s.audit_actions())
    # superseded long enough ago: the worker's purge deletes the blob and audits it
    with state.db.transaction() as session:
        session.execute(
            update(Submission)
            .where(Submission.id == first["id"])
            .values(superseded_at=datetime.now(UTC) - timedelta(hours=25))
        )
    assert purge_expired(s.settings, state.db, Actor("worker", "enclave")) == 1
    assert not blob.exists()
    assert ("submission.purged", "ok") in s.audit_actions()
    with state.db.snapshot() as session:
        assert held_bytes(session, s.project_id, sub.partner_id) == 0
    # within the grace period nothing else is purged
    assert purge_expired(s.settings, state.db, Actor("worker", "enclave")) == 0
