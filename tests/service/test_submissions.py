"""Submissions over HTTP: accepted, superseded, every kind of bad upload, sealed at rest."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from linkage.manifest import MANIFEST_KEY
from service.crypto import SealError, load_enclave_private_key, open_sealed
from tests.service_fixtures import Service


def test_accept_then_supersede(project_service: Service, hashed_extracts: dict[str, Path]) -> None:
    s = project_service
    data = hashed_extracts["housing"].read_bytes()
    r = s.upload(s.tokens["housing"], data)
    assert r.status_code == 201, r.text
    receipt = r.json()
    assert receipt["version"] == 1 and receipt["status"] == "current"
    assert receipt["rows"] == pq.read_metadata(hashed_extracts["housing"]).num_rows
    assert (
        r.headers["cache-control"] == "no-store"
        and "max-age" in r.headers["strict-transport-security"]
    )
    assert r.headers["x-request-id"]
    # the project now has the key check value of the first submission
    project = s.http.get(f"/v1/projects/{s.project_id}", headers=s.as_(s.admin)).json()
    assert project["key_check_value"] is not None
    # same file twice: 409, nothing new
    again = s.upload(s.tokens["housing"], data)
    assert again.status_code == 409 and "identical" in again.json()["detail"]
    # a different file supersedes
    police_file = hashed_extracts["police"].read_bytes()
    r2 = s.upload(s.tokens["housing"], police_file)
    assert r2.status_code == 201 and r2.json()["version"] == 2
    subs = s.http.get(
        f"/v1/projects/{s.project_id}/submissions", headers=s.as_(s.tokens["housing"])
    ).json()
    assert [(x["version"], x["status"]) for x in subs] == [(1, "superseded"), (2, "current")]
    actions = s.audit_actions()
    assert ("submission.accepted", "ok") in actions and ("submission.superseded", "ok") in actions
    assert ("submission.rejected", "rejected") in actions  # the duplicate
    # a partner sees only its own submissions
    assert (
        s.http.get(
            f"/v1/projects/{s.project_id}/submissions", headers=s.as_(s.tokens["police"])
        ).json()
        == []
    )


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


@pytest.mark.parametrize(
    ("make", "status", "message"),
    [
        (lambda f: b"", 400, "the upload is empty"),
        (lambda f: b"name,dob\nAnn,1980-01-01\n", 422, "not a Parquet file"),
        (lambda f: f.read_bytes()[: len(f.read_bytes()) // 2], 422, "not a Parquet file"),
        (
            lambda f: _mutate(f, lambda t, m: (t.drop(["t_dob_year"]), m)),
            422,
            "missing column 't_dob_year'",
        ),
        (
            lambda f: _mutate(
                f, lambda t, m: (t.append_column("notes", pa.array(["x"] * t.num_rows)), m)
            ),
            422,
            "unexpected column 'notes'",
        ),
        (
            lambda f: _mutate(
                f, lambda t, m: (t.append_column("forename", pa.array(["ANN"] * t.num_rows)), m)
            ),
            422,
            "plaintext identifier",
        ),
        (lambda f: _mutate(f, _plaintext_names), 422, "Run `pprl hash`"),
        (
            lambda f: _mutate(
                f, lambda t, m: (t, {k: v for k, v in m.items() if k != MANIFEST_KEY})
            ),
            422,
            "no pprl manifest",
        ),
        (lambda f: _mutate(f, lambda t, m: (t.slice(0, 10), m)), 422, "altered after `pprl hash`"),
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
            422,
            "a_area",
        ),
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
    ],
)
def test_bad_uploads_are_refused_and_leave_nothing(
    project_service: Service,
    hashed_extracts: dict[str, Path],
    make,
    status: int,
    message: str,  # type: ignore[no-untyped-def]
) -> None:
    s = project_service
    r = s.upload(s.tokens["housing"], make(hashed_extracts["housing"]))
    assert r.status_code == status, r.text
    assert message in r.json()["detail"]
    assert not list(s.settings.data_dir.rglob("*.sealed")) and not list(
        s.settings.data_dir.rglob("*.part")
    )
    assert (
        s.http.get(f"/v1/projects/{s.project_id}/submissions", headers=s.as_(s.admin)).json() == []
    )
    assert s.audit_actions()[-1] == ("submission.rejected", "rejected")
    assert s.http.get("/healthz").status_code == 200


def test_wrong_secret_is_caught_at_upload(
    project_service: Service, hashed_extracts: dict[str, Path]
) -> None:
    s = project_service
    assert s.upload(s.tokens["housing"], hashed_extracts["housing"].read_bytes()).status_code == 201
    r = s.upload(s.tokens["police"], hashed_extracts["wrong_secret"].read_bytes())
    assert r.status_code == 422 and "different secret" in r.json()["detail"]


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
    assert s.upload(s.tokens["housing"], source.read_bytes()).status_code == 201
    (blob,) = list(s.settings.data_dir.rglob("*.sealed"))
    sealed = blob.read_bytes()
    tokens = pq.read_table(source, columns=["t_nhs_number_exact", "t_surname_exact"])
    sample = [v for col in tokens.columns for v in col.to_pylist()[:200] if v is not None]
    assert sample and not any(t in sealed for t in sample)
    key = load_enclave_private_key(s.settings.enclave_private_key_path)
    assert b"".join(open_sealed(blob, key)) == source.read_bytes()
    flipped = bytearray(sealed)
    flipped[len(flipped) // 2] ^= 0x01
    blob.write_bytes(bytes(flipped))
    with pytest.raises(SealError, match="failed authentication"):
        b"".join(open_sealed(blob, key))
