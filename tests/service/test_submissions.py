"""Submissions over HTTP: sealed on the partner's side, envelope checked by the API,
opened and judged only by the enclave; accepted, superseded, every kind of bad upload."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from linkage.manifest import MANIFEST_KEY
from linkage.spec import ROW_REF_COLUMN
from service.crypto import SealError, load_enclave_private_key, open_sealed
from service.crypto.envelope import split_frame
from tests.service_fixtures import Service


def _subs(s: Service, token: str) -> list[dict[str, Any]]:
    r = s.http.get(f"/v1/projects/{s.project_id}/submissions", headers=s.as_(token))
    assert r.status_code == 200, r.text
    return list(r.json())


def test_accept_then_supersede(project_service: Service, hashed_extracts: dict[str, Path]) -> None:
    s = project_service
    data = hashed_extracts["housing"].read_bytes()
    r = s.upload(s.tokens["housing"], data)
    assert r.status_code == 202, r.text
    receipt = r.json()
    assert receipt["version"] == 1 and receipt["status"] == "received" and not receipt["current"]
    assert receipt["rows"] == pq.read_metadata(hashed_extracts["housing"]).num_rows
    assert r.headers["cache-control"] == "no-store"
    # the API fixed nothing yet: only the enclave's verdict counts
    project = s.http.get(f"/v1/projects/{s.project_id}", headers=s.as_(s.admin)).json()
    assert project["key_check_value"] is None
    assert s.judge() == 1
    (sub,) = _subs(s, s.tokens["housing"])
    assert (sub["status"], sub["current"], sub["reason"]) == ("accepted", True, None)
    project = s.http.get(f"/v1/projects/{s.project_id}", headers=s.as_(s.admin)).json()
    assert project["key_check_value"] is not None
    # same file twice: 409 from the envelope, nothing new
    again = s.upload(s.tokens["housing"], data)
    assert again.status_code == 409 and "identical" in again.json()["detail"]
    # a different file is received but does not supersede until the enclave accepts it
    r2 = s.upload(s.tokens["housing"], hashed_extracts["police"].read_bytes())
    assert r2.status_code == 202 and r2.json()["version"] == 2
    assert [(x["version"], x["status"], x["current"]) for x in _subs(s, s.tokens["housing"])] == [
        (1, "accepted", True),
        (2, "received", False),
    ]
    s.judge()
    subs = _subs(s, s.tokens["housing"])
    assert [(x["version"], x["status"], x["current"]) for x in subs] == [
        (1, "accepted", False),
        (2, "accepted", True),
    ]
    assert subs[0]["superseded_at"] is not None
    actions = s.audit_actions()
    for event in ("submission.received", "submission.accepted", "submission.superseded"):
        assert (event, "ok") in actions
    assert ("submission.rejected", "rejected") in actions  # the duplicate
    # a partner sees only its own submissions
    assert _subs(s, s.tokens["police"]) == []


def _mutate(path: Path, change) -> bytes:  # type: ignore[no-untyped-def]
    table = pq.read_table(path)
    meta = dict(pq.read_metadata(path).metadata or {})
    table, meta = change(table, meta)
    buf = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(meta), buf)
    return buf.getvalue()


def _plaintext_names(
    table: pa.Table, meta: dict[bytes, bytes]
) -> tuple[pa.Table, dict[bytes, bytes]]:
    names = pa.array([f"SURNAME{i:09d}".encode() for i in range(table.num_rows)], pa.binary(16))
    return table.set_column(
        table.schema.get_field_index("t_surname_exact"), "t_surname_exact", names
    ), meta


def _repeat_one_person(
    table: pa.Table, meta: dict[bytes, bytes]
) -> tuple[pa.Table, dict[bytes, bytes]]:
    """Fillers: one real row copied 2,000 times (outweighs everyone else)."""
    import json

    copies = pa.concat_tables([table, *([table.slice(0, 1)] * 2000)])
    manifest = json.loads(meta[MANIFEST_KEY])
    manifest["rows_written"] = copies.num_rows
    return copies, {**meta, MANIFEST_KEY: json.dumps(manifest).encode()}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda f: b"", "the upload is empty"),
        (lambda f: b"name,dob\nAnn,1980-01-01\n", "not a Parquet file"),
        (lambda f: f.read_bytes()[: len(f.read_bytes()) // 2], "not a Parquet file"),
        (
            lambda f: _mutate(f, lambda t, m: (t.drop(["t_dob_year"]), m)),
            "missing column 't_dob_year'",
        ),
        (
            lambda f: _mutate(
                f, lambda t, m: (t.append_column("notes", pa.array(["x"] * t.num_rows)), m)
            ),
            "unexpected column 'notes'",
        ),
        (
            lambda f: _mutate(
                f, lambda t, m: (t.append_column("forename", pa.array(["ANN"] * t.num_rows)), m)
            ),
            "plaintext identifier",
        ),
        (lambda f: _mutate(f, _plaintext_names), "Run `pprl hash`"),
        (
            lambda f: _mutate(
                f, lambda t, m: (t, {k: v for k, v in m.items() if k != MANIFEST_KEY})
            ),
            "no pprl manifest",
        ),
        (lambda f: _mutate(f, lambda t, m: (t.slice(0, 10), m)), "altered after `pprl hash`"),
        (
            lambda f: _mutate(
                f,
                lambda t, m: (
                    t.set_column(
                        t.schema.get_field_index("a_area"),
                        "a_area",
                        pa.array(["SW1A 1AA"] * t.num_rows),
                    ),
                    m,
                ),
            ),
            "a_area",
        ),
        (lambda f: _mutate(f, _repeat_one_person), "an extract lists each person about once"),
    ],
    ids=[
        "empty",
        "csv",
        "truncated",
        "missing-column",
        "extra-column",
        "plaintext-column",
        "plaintext-in-tokens",
        "no-manifest",
        "rows-altered",
        "fine-grained-area",
        "one-person-repeated",
    ],
)
def test_bad_extracts_are_rejected_by_the_enclave_and_leave_nothing(
    project_service: Service,
    hashed_extracts: dict[str, Path],
    make,
    message: str,  # type: ignore[no-untyped-def]
) -> None:
    s = project_service
    r = s.upload(s.tokens["housing"], make(hashed_extracts["housing"]))
    assert r.status_code == 202, r.text  # the API cannot look inside: only the enclave can
    assert s.judge() == 1
    (sub,) = _subs(s, s.tokens["housing"])
    assert sub["status"] == "rejected" and not sub["current"]
    assert message in sub["reason"], sub["reason"]
    assert not list(s.settings.data_dir.rglob("*.sealed"))
    assert not list(s.settings.data_dir.rglob("*.part"))
    assert s.audit_actions()[-1] == ("submission.rejected", "rejected")
    assert s.http.get("/healthz").status_code == 200


def test_a_rejected_submission_never_supersedes_an_accepted_one(
    project_service: Service, hashed_extracts: dict[str, Path]
) -> None:
    s = project_service
    good = s.submit(s.tokens["housing"], hashed_extracts["housing"].read_bytes())
    assert good["status"] == "accepted" and good["current"]
    bad = s.submit(s.tokens["housing"], b"not a parquet file at all")
    assert bad["status"] == "rejected"
    subs = _subs(s, s.tokens["housing"])
    assert [(x["version"], x["status"], x["current"]) for x in subs] == [
        (1, "accepted", True),
        (2, "rejected", False),
    ]


def _with_row_ref(extract: Path) -> bytes:
    """The extract as older versions of `pprl hash` wrote it: row numbers inside."""
    table = pq.read_table(extract)
    refs = pa.array(range(1, table.num_rows + 1), pa.int64())
    buffer = io.BytesIO()
    pq.write_table(table.add_column(0, pa.field(ROW_REF_COLUMN, pa.int64(), False), refs)
                   .replace_schema_metadata(pq.read_metadata(extract).metadata), buffer)  # fmt: skip
    return buffer.getvalue()


def test_row_ref_is_refused_by_the_enclave(
    project_service: Service, hashed_extracts: dict[str, Path]
) -> None:
    s = project_service
    r = s.upload(s.tokens["housing"], _with_row_ref(hashed_extracts["housing"]),
                 strip_row_ref=False)  # fmt: skip
    assert r.status_code == 202, r.text
    s.judge()
    (sub,) = _subs(s, s.tokens["housing"])
    assert sub["status"] == "rejected" and "row_ref" in sub["reason"]


def test_an_older_extract_with_row_ref_is_sealed_without_it(
    project_service: Service, hashed_extracts: dict[str, Path], tmp_path: Path
) -> None:
    """`pprl submit` still takes a file written before row_ref moved to the local row map:
    it rewrites it without row_ref (the slower path) and the enclave accepts the result,
    which opens to exactly the table the current `pprl hash` writes."""
    s = project_service
    r = s.upload(s.tokens["housing"], _with_row_ref(hashed_extracts["housing"]))
    assert r.status_code == 202, r.text
    s.judge()
    (sub,) = _subs(s, s.tokens["housing"])
    assert sub["status"] == "accepted", sub
    (blob,) = list(s.settings.data_dir.rglob("*.sealed"))
    key = load_enclave_private_key(s.settings.enclave_private_key_path)
    _, parquet = split_frame(b"".join(open_sealed(blob, key)))
    opened = pq.read_table(pa.BufferReader(pa.py_buffer(parquet)))
    assert opened.equals(pq.read_table(hashed_extracts["housing"]))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"spec_fingerprint": "sha256:" + "0" * 64}, "different spec"),
        ({"policy_fingerprint": "sha256:" + "1" * 64}, "disclosure policy has changed"),
        ({"enclave_key_fingerprint": "2" * 64}, "another enclave key"),
        ({"project_id": "another-project"}, "another project"),
        ({"sealed_sha256": "3" * 64}, "does not match its envelope"),
        ({"sealed_bytes": 10}, "envelope"),
    ],
    ids=["spec", "policy", "enclave-key", "project", "digest", "size"],
)
def test_envelope_that_does_not_fit_is_refused_by_the_api(
    project_service: Service,
    hashed_extracts: dict[str, Path],
    change: dict[str, Any],
    message: str,
) -> None:
    s = project_service
    r = s.upload(s.tokens["housing"], hashed_extracts["housing"].read_bytes(), **change)
    assert r.status_code == 422, r.text
    assert message in r.json()["detail"]
    assert s.audit_actions()[-1] == ("submission.rejected", "rejected")
    assert _subs(s, s.admin) == []
    assert not list(s.settings.data_dir.rglob("*.sealed"))
    assert not list(s.settings.data_dir.rglob("*.part"))


def test_missing_envelope_is_refused(
    project_service: Service, hashed_extracts: dict[str, Path]
) -> None:
    s = project_service
    r = s.http.post(
        f"/v1/projects/{s.project_id}/submissions",
        headers={**s.as_(s.tokens["housing"]), "Content-Type": "application/vnd.apache.parquet"},
        content=hashed_extracts["housing"].read_bytes(),
    )
    assert r.status_code == 422 and "X-PPRL-Envelope header is missing" in r.json()["detail"]
    assert not list(s.settings.data_dir.rglob("*.part"))


def test_wrong_secret_is_caught_at_upload(
    project_service: Service, hashed_extracts: dict[str, Path]
) -> None:
    s = project_service
    assert s.submit(s.tokens["housing"], hashed_extracts["housing"].read_bytes())["current"]
    r = s.upload(s.tokens["police"], hashed_extracts["wrong_secret"].read_bytes())
    assert r.status_code == 422 and "different secret" in r.json()["detail"]


def test_two_first_submissions_under_different_secrets(
    project_service: Service, hashed_extracts: dict[str, Path]
) -> None:
    """Before any acceptance the API cannot know the secret: the enclave accepts the
    first and rejects the other."""
    s = project_service
    assert s.upload(s.tokens["housing"], hashed_extracts["housing"].read_bytes()).status_code == 202
    wrong = s.upload(s.tokens["police"], hashed_extracts["wrong_secret"].read_bytes())
    assert wrong.status_code == 202
    s.judge()
    assert _subs(s, s.tokens["housing"])[0]["status"] == "accepted"
    police = _subs(s, s.tokens["police"])[0]
    assert police["status"] == "rejected" and "different secret" in police["reason"]


def test_oversize_upload_gets_413(
    project_service: Service, hashed_extracts: dict[str, Path]
) -> None:
    s = project_service
    s.settings.max_upload_bytes = 1000
    r = s.upload(s.tokens["housing"], hashed_extracts["housing"].read_bytes())
    assert r.status_code == 413
    assert not list(s.settings.data_dir.rglob("*.part"))
    assert s.audit_actions()[-1] == ("submission.rejected", "rejected")


def test_sealed_blob_hides_tokens_and_detects_tampering(
    project_service: Service, hashed_extracts: dict[str, Path]
) -> None:
    s = project_service
    source = hashed_extracts["housing"]
    assert s.upload(s.tokens["housing"], source.read_bytes()).status_code == 202
    (blob,) = list(s.settings.data_dir.rglob("*.sealed"))
    sealed = blob.read_bytes()
    tokens = pq.read_table(source, columns=["t_nhs_number_exact", "t_surname_exact"])
    sample = [v for col in tokens.columns for v in col.to_pylist()[:200] if v is not None]
    assert sample and not any(t in sealed for t in sample)
    key = load_enclave_private_key(s.settings.enclave_private_key_path)
    agreement, parquet = split_frame(b"".join(open_sealed(blob, key)))
    assert agreement.project_id == s.project_id
    # the file `pprl hash` wrote travels byte for byte: no row_ref to strip, no re-encoding
    assert parquet == source.read_bytes()
    opened = pq.read_table(pa.BufferReader(pa.py_buffer(parquet)))
    assert "row_ref" not in opened.column_names
    flipped = bytearray(sealed)
    flipped[len(flipped) // 2] ^= 0x01
    blob.write_bytes(bytes(flipped))
    with pytest.raises(SealError, match="failed authentication"):
        b"".join(open_sealed(blob, key))
    # the enclave rejects the tampered blob
    s.judge()
    (sub,) = _subs(s, s.tokens["housing"])
    assert sub["status"] == "rejected" and "does not open" in sub["reason"]


def _streamed(s: Service, extract: Path) -> tuple[dict[str, str], bytes]:
    """Headers and body as `pprl submit` sends an extract: sealed while sent, the sealed
    payload's SHA-256 after it."""
    from tests.sealed import sealed_upload

    project = s.http.get(f"/v1/projects/{s.project_id}", headers=s.as_(s.admin)).json()
    key = s.http.app.state.pprl.enclave_public_key  # type: ignore[attr-defined]
    return sealed_upload(extract.read_bytes(), project, key)


def _post(s: Service, headers: dict[str, str], body: bytes) -> Any:
    return s.http.post(f"/v1/projects/{s.project_id}/submissions",
                       headers={**s.as_(s.tokens["housing"]), **headers}, content=body)  # fmt: skip


def test_a_digest_after_the_body_is_checked_and_recorded(
    project_service: Service, hashed_extracts: dict[str, Path]
) -> None:
    import hashlib

    from service.crypto.envelope import ENVELOPE_HEADER, Envelope

    s = project_service
    headers, body = _streamed(s, hashed_extracts["housing"])
    envelope = Envelope.from_header(headers[ENVELOPE_HEADER])
    payload, trailer = body[: envelope.sealed_bytes], body[envelope.sealed_bytes :]
    assert envelope.digest_follows and envelope.payload_digest_follows
    # the sealed payload's digest, then the Parquet's: both taken as it was sent
    assert trailer[:32] == hashlib.sha256(payload).digest()
    assert trailer[32:] == hashlib.sha256(hashed_extracts["housing"].read_bytes()).digest()
    # a wrong digest, or none, or one of two: refused, audited, nothing kept
    for bad in (payload + bytes(64), payload, payload + trailer[:63], payload + trailer[:32]):
        r = _post(s, headers, bad)
        assert r.status_code == 422, r.text
        assert "envelope" in r.json()["detail"]
        assert s.audit_actions()[-1] == ("submission.rejected", "rejected")
        assert not list(s.settings.data_dir.rglob("*.part"))
    assert _subs(s, s.admin) == []
    # the right one: the receipt and the stored blob carry the digest of exactly the payload
    r = _post(s, headers, body)
    assert r.status_code == 202, r.text
    assert r.json()["sha256"] == trailer[:32].hex()
    (blob,) = list(s.settings.data_dir.rglob("*.sealed"))
    assert blob.read_bytes() == payload
    assert s.judge() == 1
    (sub,) = _subs(s, s.tokens["housing"])
    assert sub["status"] == "accepted" and sub["sha256"] == trailer[:32].hex()
    # the envelope on record is whole: both digests filled in from the trailer
    recorded = Envelope.from_json(_recorded_envelope(s, sub["id"]))
    assert (recorded.sealed_sha256, recorded.payload_sha256) == (trailer[:32].hex(),
                                                                 trailer[32:].hex())  # fmt: skip
    # the same extract again: spotted by the Parquet's digest once the body is in
    headers, body = _streamed(s, hashed_extracts["housing"])
    again = _post(s, headers, body)
    assert again.status_code == 409, again.text
    assert not list(s.settings.data_dir.rglob("*.part"))
    assert len(_subs(s, s.admin)) == 1


def test_a_payload_digest_that_does_not_name_the_extract_is_refused(
    project_service: Service, hashed_extracts: dict[str, Path]
) -> None:
    """The Parquet's digest after the body is the partner's claim: the enclave compares
    it with the extract it opened and refuses the submission when they differ."""
    import hashlib

    from service.crypto.envelope import ENVELOPE_HEADER, Envelope

    s = project_service
    headers, body = _streamed(s, hashed_extracts["housing"])
    n = Envelope.from_header(headers[ENVELOPE_HEADER]).sealed_bytes
    lying = body[: n + 32] + hashlib.sha256(b"another extract").digest()
    r = _post(s, headers, lying)
    assert r.status_code == 202, r.text  # the API cannot tell: it never opens the payload
    assert s.judge() == 1
    (sub,) = _subs(s, s.tokens["housing"])
    assert sub["status"] == "rejected", sub
    assert "differs from the envelope's digest" in (sub["reason"] or ""), sub


def _recorded_envelope(s: Service, submission_id: str) -> str:
    from service.db.models import Submission

    with s.http.app.state.pprl.db.snapshot() as session:  # type: ignore[attr-defined]
        row = session.get(Submission, submission_id)
        assert row is not None and row.envelope_json
        return row.envelope_json


def test_each_streamed_sealing_is_new_and_opens_to_the_extract(
    hashed_extracts: dict[str, Path],
) -> None:
    """A retry seals again (a new ephemeral key: nothing sealed waits on disk); every
    sealing opens to the same frame and extract and fits the envelope's size."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from service.cli.sealed_extract import stream_extract
    from service.crypto.sealing import open_bytes

    key = X25519PrivateKey.generate()
    stream = stream_extract(hashed_extracts["housing"], key.public_key(), "p", "f" * 64,
                            chunk=4096)  # fmt: skip
    first, second = b"".join(stream.body()), b"".join(stream.body())
    assert first != second
    for body in (first, second):
        assert len(body) == stream.envelope.body_bytes
        _, parquet = split_frame(open_bytes(body[: stream.envelope.sealed_bytes], key))
        assert bytes(parquet) == hashed_extracts["housing"].read_bytes()


def test_a_receipt_can_wait_for_the_verdict(
    project_service: Service, hashed_extracts: dict[str, Path]
) -> None:
    """``?wait=`` holds the answer until the enclave's verdict is recorded (or the wait
    is over), so `pprl submit --wait` needs no polling loop of its own."""
    import threading
    import time

    s = project_service
    r = s.upload(s.tokens["housing"], hashed_extracts["housing"].read_bytes())
    assert r.status_code == 202, r.text
    url = f"/v1/projects/{s.project_id}/submissions/{r.json()['id']}"
    started = time.monotonic()
    still = s.http.get(url, params={"wait": 0.5}, headers=s.as_(s.tokens["housing"]))
    assert still.json()["status"] == "received" and time.monotonic() - started >= 0.5
    # another partner still cannot see it, waiting or not
    assert (
        s.http.get(url, params={"wait": 0.1}, headers=s.as_(s.tokens["police"])).status_code == 404
    )
    assert (
        s.http.get(url, params={"wait": 31}, headers=s.as_(s.tokens["housing"])).status_code == 422
    )

    judging = threading.Timer(0.3, s.judge)
    judging.start()
    started = time.monotonic()
    decided = s.http.get(url, params={"wait": 20}, headers=s.as_(s.tokens["housing"]))
    judging.join()
    assert decided.json()["status"] == "accepted", decided.json()
    assert time.monotonic() - started < 10  # answered when the verdict came, not at 20 s


def test_a_digest_after_the_body_holds_without_a_declared_length(
    project_service: Service, hashed_extracts: dict[str, Path]
) -> None:
    """Sent chunked (no Content-Length, so nothing is refused before the body), a body
    one byte too long, without its digest, or one byte short is refused; the same body
    whole, in 7,000-byte pieces that split its digest, is received."""
    s = project_service
    headers, body = _streamed(s, hashed_extracts["housing"])

    def pieces(data: bytes) -> Any:
        return (data[i : i + 7000] for i in range(0, len(data), 7000))

    for bad in (body + b"x", body[:-64], body[:-32], body[:-1]):
        r = _post(s, headers, pieces(bad))
        assert r.status_code == 422, r.text
        assert "envelope" in r.json()["detail"]
    assert _subs(s, s.admin) == []
    assert not list(s.settings.data_dir.rglob("*.part"))
    r = _post(s, headers, pieces(body))
    assert r.status_code == 202, r.text
    assert r.json()["sha256"] == body[-64:-32].hex()
