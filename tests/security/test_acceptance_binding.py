"""The enclave's acceptance is bound to the submission and its bytes, on SQLite and
PostgreSQL, through the real upload, intake and run: an operator who marks a submission
accepted in the database, swaps an accepted blob for another payload sealed to the
enclave's public key, or alters the acceptance tag cannot make a run link what the
enclave did not accept. A submission accepted before tags existed is validated again
and tagged, and the run goes on."""

from __future__ import annotations

import hashlib
import io
import shutil
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select, update

from service.db.models import Principal, Submission
from tests.sealed import sealed_upload
from tests.service_fixtures import Service

TAMPERED = (
    "housing's submission v1 is not the one the enclave accepted (altered in the database "
    "or in storage): it must submit again"
)
REFUSED = (
    "housing's submission v1 carries no acceptance by the enclave, and the enclave's "
    "validator refuses it now: it must submit again"
)


def _db(s: Service) -> Any:
    return s.http.app.state.pprl.db  # type: ignore[attr-defined]


def _new_project(s: Service) -> None:
    s.project_id = s.project(name=f"p-{uuid.uuid4().hex[:8]}",
                             members=["housing", "police", "analyst"],
                             run_rules={"runs_per_period": 50})  # fmt: skip


def _upload(s: Service, partner: str, data: bytes) -> str:
    r = s.upload(s.tokens[partner], data)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def _row(s: Service, partner: str) -> Submission:
    with _db(s).transaction() as session:
        sub = session.execute(
            select(Submission)
            .join(Principal, Principal.id == Submission.partner_id)
            .where(Submission.project_id == s.project_id, Principal.name == partner)
        ).scalar_one()
        session.expunge(sub)
        return sub  # type: ignore[no-any-return]


def _set(s: Service, submission_id: str, **values: Any) -> None:
    """What an operator with the database can do."""
    with _db(s).transaction() as session:
        session.execute(update(Submission).where(Submission.id == submission_id).values(**values))


def _run(s: Service, **params: Any) -> dict[str, Any]:
    return s.run_now(**params)


def _both_accepted(s: Service, extracts: dict[str, Path], *partners: str) -> None:
    """A fresh project with ``partners``' extracts (housing then police by default)
    uploaded and judged by the enclave."""
    _new_project(s)
    for partner in partners or ("housing", "police"):
        _upload(s, partner, extracts[partner].read_bytes())
    s.judge()


def _events(s: Service, action: str) -> list[dict[str, Any]]:
    return s.audit_events(action)


def _one_person_on_every_row(extract: Path) -> bytes:
    """``extract`` with one NHS number on every row: the validator refuses it."""
    table = pq.read_table(extract)
    index = table.schema.get_field_index("t_nhs_number_exact")
    same = pa.array([bytes(range(16))] * table.num_rows, table.schema.field(index).type)
    out = io.BytesIO()
    table = table.set_column(index, "t_nhs_number_exact", same)
    pq.write_table(table.replace_schema_metadata(pq.read_metadata(extract).metadata), out)
    return out.getvalue()


def _assert_failed_audited(s: Service, state: dict[str, Any], message: str) -> None:
    assert state["status"] == "failed" and state["message"] == message, state
    failed = _events(s, "run.failed")
    assert failed and failed[-1]["message"] == message and failed[-1]["outcome"] == "failed"


@pytest.mark.parametrize("before", ["received", "rejected"])
def test_a_submission_marked_accepted_by_hand_is_validated_not_linked(
    project_service: Service, hashed_extracts: dict[str, Path], before: str
) -> None:
    s = project_service
    _new_project(s)
    bad = _upload(s, "housing", _one_person_on_every_row(hashed_extracts["housing"]))
    blob = s.settings.data_dir / _row(s, "housing").blob_path
    kept = blob.read_bytes()  # the operator holds the storage
    if before == "received":  # marked accepted before the enclave could judge it
        _set(s, bad, status="accepted")
    _upload(s, "police", hashed_extracts["police"].read_bytes())
    s.judge()
    if before == "rejected":
        assert _row(s, "housing").status == "rejected" and not blob.exists()
        blob.write_bytes(kept)
        _set(s, bad, status="accepted", reason=None, purged_at=None)
    assert _row(s, "police").enclave_tag is not None  # intake tagged the good one
    state = _run(s)
    _assert_failed_audited(s, state, REFUSED)
    again = _events(s, "submission.revalidated")
    assert [(e["subject"], e["outcome"], e["reason"]) for e in again] == [
        (bad, "rejected", "repeated_identity")
    ]
    assert again[0]["partner"] == "housing" and again[0]["run"] == state["id"]
    assert _row(s, "housing").enclave_tag is None  # still not the enclave's: next run, same
    _assert_failed_audited(s, _run(s), REFUSED)


def test_an_accepted_blob_swapped_for_another_sealed_extract_fails_the_run(
    project_service: Service, hashed_extracts: dict[str, Path]
) -> None:
    s = project_service
    _both_accepted(s, hashed_extracts)
    housing = _row(s, "housing")
    assert housing.status == "accepted" and housing.enclave_tag is not None
    # another extract sealed for this project to the enclave's public key (anyone has it):
    # it opens, its agreement fits, the validator would accept it; it is not what was
    info = s.http.get(f"/v1/projects/{s.project_id}", headers=s.as_(s.admin)).json()
    public = s.http.app.state.pprl.enclave_public_key  # type: ignore[attr-defined]
    swapped = pq.read_table(hashed_extracts["housing"]).slice(0, 400)
    out = io.BytesIO()
    pq.write_table(swapped, out)
    _, body = sealed_upload(out.getvalue(), info, public, digest_follows=False)
    blob = s.settings.data_dir / housing.blob_path
    blob.write_bytes(body)
    _assert_failed_audited(s, _run(s), TAMPERED)
    # and with the database's digest changed to match: the tag binds the digest
    _set(s, housing.id, sha256=hashlib.sha256(body).hexdigest())
    _assert_failed_audited(s, _run(s), TAMPERED)
    assert not _events(s, "submission.revalidated")


def test_an_altered_acceptance_tag_fails_the_run(
    project_service: Service, hashed_extracts: dict[str, Path]
) -> None:
    s = project_service
    _both_accepted(s, hashed_extracts)
    housing, police = _row(s, "housing"), _row(s, "police")
    assert housing.enclave_tag and police.enclave_tag
    flipped = ("0" if housing.enclave_tag[0] != "0" else "1") + housing.enclave_tag[1:]
    # a tag altered, a genuine tag of another submission, and a genuine tag on a row
    # whose other fields moved: none is the enclave's acceptance of this row
    for values in (
        {"enclave_tag": flipped},
        {"enclave_tag": police.enclave_tag},
        {"enclave_tag": housing.enclave_tag, "rows": housing.rows + 1},
        {"rows": housing.rows, "period": "2026-Q1"},  # moved into another period's run
    ):
        _set(s, housing.id, **values)
        params = {"period": values["period"]} if "period" in values else {}
        _assert_failed_audited(s, _run(s, **params), TAMPERED)
    assert not _events(s, "submission.revalidated")
    _set(s, housing.id, period=None)  # put back as the enclave accepted it: runs again
    assert _run(s)["status"] == "done"


def test_an_untagged_accepted_submission_is_validated_tagged_and_linked(
    project_service: Service, hashed_extracts: dict[str, Path]
) -> None:
    s = project_service
    _both_accepted(s, hashed_extracts)
    housing = _row(s, "housing")
    assert housing.enclave_tag is not None
    _set(s, housing.id, enclave_tag=None)  # as accepted before tags existed
    state = _run(s)
    assert state["status"] == "done", state
    # validated again in the enclave and given the very tag intake would have given
    assert _row(s, "housing").enclave_tag == housing.enclave_tag
    again = _events(s, "submission.revalidated")
    assert [(e["subject"], e["outcome"], e["rows"]) for e in again] == [
        (housing.id, "accepted", housing.rows)
    ]
    assert _run(s)["status"] == "done"
    assert len(_events(s, "submission.revalidated")) == 1  # tagged once, for good


def test_an_untagged_submission_whose_blob_moved_is_not_linked(
    project_service: Service, hashed_extracts: dict[str, Path], tmp_path: Path
) -> None:
    """Clearing the tag does not launder a swapped blob: the validator judges the file in
    storage, and the run checks it is the one the row names."""
    s = project_service
    _both_accepted(s, hashed_extracts, "police", "housing")
    housing, police = _row(s, "housing"), _row(s, "police")
    # housing's blob replaced by police's genuine accepted one, and the tag cleared
    shutil.copy(s.settings.data_dir / police.blob_path, s.settings.data_dir / housing.blob_path)
    _set(s, housing.id, enclave_tag=None)
    _assert_failed_audited(s, _run(s), REFUSED)
    assert _events(s, "submission.revalidated")[-1]["reason"] == "agreement"


def _sealed_elsewhere(s: Service, data: bytes) -> bytes:
    """``data`` sealed for this project to the enclave's public key, as anyone can."""
    info = s.http.get(f"/v1/projects/{s.project_id}", headers=s.as_(s.admin)).json()
    public = s.http.app.state.pprl.enclave_public_key  # type: ignore[attr-defined]
    return sealed_upload(data, info, public, digest_follows=False)[1]


def _swap_after_judging(
    s: Service, monkeypatch: pytest.MonkeyPatch, module: str, submission_id: str, body: bytes
) -> None:
    """While the validator child judges the genuine file, the operator puts ``body`` in
    its place and names it in the database (an operator controls when it acts)."""
    import importlib

    target = importlib.import_module(module)
    real = target.judge_in_child
    blob = s.settings.data_dir / _row_by_id(s, submission_id).blob_path

    def judged_then_swapped(settings: Any, job: dict[str, Any], size: int) -> Any:
        verdict = real(settings, job, size)
        if Path(job["path"]) == blob:
            blob.write_bytes(body)
            _set(s, submission_id, sha256=hashlib.sha256(body).hexdigest())
        return verdict

    monkeypatch.setattr(target, "judge_in_child", judged_then_swapped)


def _row_by_id(s: Service, submission_id: str) -> Submission:
    with _db(s).transaction() as session:
        sub = session.get(Submission, submission_id)
        assert sub is not None
        session.expunge(sub)
        return sub


def test_a_blob_swapped_while_intake_judges_it_is_not_accepted(
    project_service: Service, hashed_extracts: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    s = project_service
    _new_project(s)
    housing = _upload(s, "housing", hashed_extracts["housing"].read_bytes())
    _upload(s, "police", hashed_extracts["police"].read_bytes())
    hostile = _sealed_elsewhere(s, _one_person_on_every_row(hashed_extracts["housing"]))
    _swap_after_judging(s, monkeypatch, "service.worker.intake", housing, hostile)
    s.judge()
    row = _row_by_id(s, housing)
    assert (row.status, row.enclave_tag) == ("rejected", None), row.status
    assert row.reason and "not the one that was received" in row.reason
    assert _events(s, "submission.rejected")[-1]["reason"] == "altered"
    assert _row(s, "police").status == "accepted"


def test_a_blob_swapped_while_the_enclave_validates_it_again_is_not_linked(
    project_service: Service, hashed_extracts: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    s = project_service
    _both_accepted(s, hashed_extracts)
    housing = _row(s, "housing")
    hostile = _sealed_elsewhere(s, _one_person_on_every_row(hashed_extracts["housing"]))
    # untagged, and already naming the file to come: the genuine one is what gets judged
    _set(s, housing.id, enclave_tag=None, sha256=hashlib.sha256(hostile).hexdigest())
    _swap_after_judging(s, monkeypatch, "service.worker.revalidate", housing.id, hostile)
    _assert_failed_audited(s, _run(s), TAMPERED)
    assert _events(s, "submission.revalidated")[-1]["reason"] == "altered"
    assert _row(s, "housing").enclave_tag is None


def _rewritten(extract: Path) -> bytes:
    """The same rows and manifest in other bytes (another codec): a new version, not a
    resubmission of the identical file."""
    out = io.BytesIO()
    table = pq.read_table(extract)
    pq.write_table(table.replace_schema_metadata(pq.read_metadata(extract).metadata), out,
                   compression="snappy")  # fmt: skip
    return out.getvalue()


def test_a_rollback_to_an_older_version_fails_the_run(
    project_service: Service, hashed_extracts: dict[str, Path]
) -> None:
    """Once the enclave has released from a partner's version 2, an operator who makes
    version 1 current again (no longer superseded, and version 2 marked purged or
    version 1 dated later) cannot have it linked: each still carries its acceptance tag,
    which binds its version, and the enclave's own state remembers the newest version
    it released from."""
    s = project_service
    _both_accepted(s, hashed_extracts)
    assert _run(s)["status"] == "done"
    newer = _upload(s, "housing", _rewritten(hashed_extracts["housing"]))
    s.judge()
    with _db(s).transaction() as session:
        subs = session.execute(
            select(Submission.id, Submission.version, Submission.received_at,
                   Submission.superseded_at)
            .join(Principal, Principal.id == Submission.partner_id)
            .where(Submission.project_id == s.project_id, Principal.name == "housing")
            .order_by(Submission.version)
        ).all()  # fmt: skip
    (older, v1, older_at, superseded), (newest, v2, newer_at, _) = subs
    assert newest == newer and (v1, v2) == (1, 2) and superseded is not None
    assert _run(s)["status"] == "done"  # released from housing's version 2
    rolled_back = (
        "the submission offered for housing is version 1, older than version 2 the enclave "
        "has released from: the project's current submissions were rolled back in storage "
        "or in the database"
    )
    _set(s, older, superseded_at=None)
    _set(s, newer, purged_at=newer_at)  # the newest hidden
    _assert_failed_audited(s, _run(s), rolled_back)
    _set(s, newer, purged_at=None)
    _set(s, older, received_at=newer_at + 2 * (newer_at - older_at))
    _assert_failed_audited(s, _run(s), rolled_back)  # the older dated later
    # nor by numbering the older one above the newest: its tag binds version 1
    _set(s, older, version=3, received_at=older_at)
    _set(s, newer, purged_at=newer_at)
    _assert_failed_audited(s, _run(s), TAMPERED.replace("v1", "v3"))
    _set(s, newer, purged_at=None)  # put back: runs again
    _set(s, older, version=1, superseded_at=superseded)
    assert _run(s)["status"] == "done"
