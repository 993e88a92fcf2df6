"""Judging an upload while it arrives (``judge_stream`` in the validator child, and the
worker's early intake, ``service.worker.streaming``).

The streamed path may only make a verdict sooner, never different: over honest and
hostile extracts, in v1 and v2 frames, written in random pieces, it reaches the verdict
of the whole file; a bad first row group is refused before the upload ends; a forged
footer copy is caught; an upload cut off keeps nothing; and a real worker decides a
streamed upload through the ordinary, audited transition while it is still arriving.
"""

from __future__ import annotations

import io
import itertools
import json
import random
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from linkage.spec import fingerprint, load_spec
from service.cli.sealed_extract import seal_extract
from service.crypto.envelope import (
    ENVELOPE_HEADER,
    Envelope,
    frame_prefix,
    key_fingerprint,
    parquet_tail,
    read_frame_head,
)
from service.crypto.sealing import open_bytes, seal_bytes
from service.worker.validator import judge, judge_stream
from tests.conftest import EXAMPLE_SPEC
from tests.live_server import free_port, service_env, start_server
from tests.sealed import sealed_upload
from tests.service_fixtures import Service

KEY = X25519PrivateKey.generate()
_UPLOADS = itertools.count()
POLICY = "f" * 64


def _project() -> dict[str, Any]:
    return {"id": "p-stream", "spec_fingerprint": fingerprint(load_spec(EXAMPLE_SPEC)),
            "key_check_value": None, "policy_fingerprint": POLICY}  # fmt: skip


def _regroup(data: bytes, rows: int = 2000, **changes: Any) -> bytes:
    """``data`` rewritten in row groups of ``rows`` (manifest kept), columns changed."""
    table = pq.read_table(io.BytesIO(data))
    for name, values in changes.items():
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, pa.array(values, table.schema.field(name).type))
    out = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(pq.read_metadata(io.BytesIO(data)).metadata),
                   out, row_group_size=rows, compression="zstd")  # fmt: skip
    return out.getvalue()


def _manifest_for(extract: Path, table: pa.Table) -> dict[bytes, bytes]:
    """``extract``'s metadata with its manifest's row count set to ``table``'s."""
    from linkage.manifest import MANIFEST_KEY, Manifest

    meta = dict(pq.read_metadata(extract).metadata or {})
    manifest = Manifest.from_json(meta[MANIFEST_KEY])
    meta[MANIFEST_KEY] = replace(manifest, rows_written=table.num_rows).to_json()
    return meta


def _sealed(data: bytes, v2: bool = True, chunk: int | None = None) -> tuple[Envelope, bytes]:
    if chunk is None:
        # as the API stores it: the sealed payload alone, its digest in the envelope
        headers, body = sealed_upload(data, _project(), KEY.public_key(), strip_row_ref=v2,
                                      digest_follows=False)  # fmt: skip
        return Envelope.from_header(headers[ENVELOPE_HEADER]), body
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "in.parquet"
        source.write_bytes(data)
        project = _project()
        done = seal_extract(source, Path(tmp) / "out.sealed", KEY.public_key(), project["id"],
                            project["policy_fingerprint"], chunk=chunk)  # fmt: skip
        return done.envelope, done.path.read_bytes()


def _job(envelope: Envelope, path: Path, **extra: Any) -> dict[str, Any]:
    project = _project()
    return {
        "private_key": KEY.private_bytes_raw().hex(),
        "path": str(path),
        "envelope": envelope.to_json(),
        "project": {
            "project_id": project["id"],
            "spec_fingerprint": project["spec_fingerprint"],
            "spec_json": EXAMPLE_SPEC.read_text(),
            "key_check_value": None,
            "policy_fingerprint": POLICY,
        },  # fmt: skip
        "max_identity_share": 0.01,
        "max_identity_floor": 50,
        **extra,
    }


def _arriving(
    tmp: Path,
    body: bytes,
    seed: int,
    stop_at: float | None = None,
    hold: threading.Event | None = None,
) -> tuple[Path, Path, threading.Thread]:
    """Write ``body`` to a partial file in random pieces, as the API does, removing the
    envelope beside it at the end; ``stop_at``: cut off there (the API deletes both);
    ``hold``: pause at ``stop_at`` until it is set, then finish."""
    name = f"up-{seed}-{next(_UPLOADS)}"  # new names each time, as the API's are
    part, sidecar = tmp / f"{name}.part", tmp / f"{name}.envelope"
    sidecar.write_text("{}")
    rng = random.Random(seed)

    def write() -> None:
        with part.open("wb", buffering=0) as fh:
            at = 0
            cut = int(len(body) * stop_at) if stop_at is not None else len(body)
            while at < len(body):
                if at >= cut:
                    if hold is None:
                        part.unlink()
                        sidecar.unlink()
                        return
                    hold.wait(20)
                    cut = len(body)
                step = min(rng.randint(1, max(len(body) // 6, 1)), max(cut - at, 1))
                fh.write(body[at : at + step])
                at += step
                time.sleep(rng.random() * 0.003)
        sidecar.unlink()

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return part, sidecar, thread


def _streamed(tmp: Path, envelope: Envelope, body: bytes, seed: int) -> dict[str, Any]:
    part, sidecar, writer = _arriving(tmp, body, seed)
    verdict = judge_stream(_job(envelope, part, sidecar=str(sidecar), stream=True,
                                arrival_seconds=10))  # fmt: skip
    writer.join(10)
    return verdict


def _copies(extract: Path, copies: int) -> bytes:
    """``extract`` repeated ``copies`` times (its manifest updated): enough rows that
    the row-group checks start before the file is complete (the plaintext guard reads
    20,000 rows first), few enough repeats of one person to be honest."""
    table = pq.read_table(extract)
    many = pa.concat_tables([table] * copies)
    out = io.BytesIO()
    pq.write_table(many.replace_schema_metadata(_manifest_for(extract, many)), out,
                   row_group_size=2000, compression="zstd")  # fmt: skip
    return out.getvalue()


def _whole(tmp: Path, envelope: Envelope, body: bytes) -> dict[str, Any]:
    path = tmp / "whole.sealed"
    path.write_bytes(body)
    return judge(_job(envelope, path))


def _variants(honest: bytes) -> dict[str, tuple[bytes, bool]]:
    """Extract bytes (and whether sealed in a v2 frame) the validator must judge alike."""
    table = pq.read_table(io.BytesIO(honest))
    rows = table.num_rows
    areas = table.column("a_area").to_pylist()
    nhs = table.column("t_nhs_number_exact").to_pylist()
    names = table.column("t_forename_exact").to_pylist()
    corrupt = bytearray(_regroup(honest))
    meta = pq.read_metadata(io.BytesIO(bytes(corrupt)))
    group = meta.row_group(meta.num_row_groups // 2)  # a page the validator decodes
    nhs_chunk = group.column(meta.schema.to_arrow_schema().get_field_index("t_nhs_number_exact"))
    at = nhs_chunk.data_page_offset + 4
    corrupt[at : at + 48] = b"\xff" * 48
    return {
        "honest": (_regroup(honest), True),
        "honest, one row group": (_regroup(honest, rows=rows), True),
        "honest, v1 frame": (_regroup(honest), False),
        "bad area in the last row group": (_regroup(honest, a_area=[*areas[:-1], "LONDON"]), True),
        "bad area in the first row group": (_regroup(honest, a_area=["LONDON", *areas[1:]]), True),
        "readable tokens": (_regroup(honest, t_forename_exact=[b"ABCDEFGHIJKLMNOP"] * rows), True),
        "one NHS number on every row": (_regroup(honest, t_nhs_number_exact=[nhs[0] or bytes(range(16))] * rows), True),
        "a repeat only across row groups": (
            _regroup(honest, t_nhs_number_exact=[b"\x07" * 16 if i % 5 == 0 else n
                                                 for i, n in enumerate(nhs)]), True),  # fmt: skip
        "names mostly missing": (_regroup(honest, t_forename_exact=[None] * (rows - 3) + names[-3:]), True),
        "corrupt pages": (bytes(corrupt), True),
        "not parquet": (b"PAR1" + bytes(range(256)) * 40 + b"PAR1", False),
    }  # fmt: skip


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_streamed_verdicts_equal_whole_file_verdicts(
    hashed_extracts: dict[str, Path], tmp_path: Path, seed: int
) -> None:
    honest = _copies(hashed_extracts["housing"], 100)
    judged: dict[str, tuple[bool, str]] = {}
    for name, (data, v2) in _variants(honest).items():
        # small sealed chunks: each arrives (and is checked) on its own
        envelope, body = _sealed(data, v2, chunk=(8 << 10) if v2 else None)
        whole = _whole(tmp_path, envelope, body)
        streamed = _streamed(tmp_path, envelope, body, seed)
        assert (streamed["ok"], streamed.get("reason")) == (whole["ok"], whole.get("reason")), name
        assert streamed.get("detail") == whole.get("detail"), name
        if whole["ok"]:
            assert (
                streamed["rows"] == whole["rows"]
                and streamed["sealed_sha256"] == envelope.sealed_sha256
            )
        judged[name] = (whole["ok"], whole.get("reason", ""))
    # the variants are judged as they should be, not merely alike
    assert (
        judged["honest"]
        == judged["honest, v1 frame"]
        == judged["honest, one row group"]
        == (True, "")
    )
    assert judged["bad area in the last row group"] == (False, "attribute")
    assert judged["readable tokens"] == (False, "plaintext")
    assert judged["one NHS number on every row"] == (False, "repeated_identity")
    assert judged["corrupt pages"][0] is False and judged["not parquet"][0] is False


def test_a_bad_first_row_group_is_refused_before_the_upload_ends(
    hashed_extracts: dict[str, Path], tmp_path: Path
) -> None:
    # the plaintext guard reads the first 20,000 rows before any other row-group check
    # (the order of the whole-file checks): 300 copies of the extract have enough rows
    table = pq.read_table(hashed_extracts["housing"])
    many = pa.concat_tables([table] * 300)
    areas = many.column("a_area").to_pylist()
    many = many.set_column(many.schema.get_field_index("a_area"), "a_area",
                           pa.array(["LONDON", *areas[1:]]))  # fmt: skip
    out = io.BytesIO()
    pq.write_table(many.replace_schema_metadata(_manifest_for(hashed_extracts["housing"], many)),
                   out, row_group_size=4000, compression="zstd")  # fmt: skip
    envelope, body = _sealed(out.getvalue(), chunk=64 << 10)  # sealed chunks arrive one by one
    hold = threading.Event()
    part, sidecar, writer = _arriving(tmp_path, body, seed=5, stop_at=0.7, hold=hold)
    started = time.monotonic()
    verdict = judge_stream(_job(envelope, part, sidecar=str(sidecar), stream=True,
                                arrival_seconds=15))  # fmt: skip
    assert not hold.is_set() and time.monotonic() - started < 10
    assert (verdict["ok"], verdict["reason"]) == (False, "attribute"), verdict
    hold.set()
    writer.join(10)


def test_an_upload_cut_off_keeps_nothing(hashed_extracts: dict[str, Path], tmp_path: Path) -> None:
    envelope, body = _sealed(_regroup(hashed_extracts["housing"].read_bytes()))
    for seed, share in ((7, 0.0), (8, 0.5), (9, 0.95)):
        part, sidecar, writer = _arriving(tmp_path, body, seed, stop_at=share)
        started = time.monotonic()
        verdict = judge_stream(_job(envelope, part, sidecar=str(sidecar), stream=True,
                                    arrival_seconds=30))  # fmt: skip
        writer.join(10)
        # cut off while followed, or over before the child could open it: nothing kept
        assert verdict["ok"] is False and verdict["reason"] in ("abandoned", "missed"), verdict
        assert time.monotonic() - started < 10  # noticed, not waited out
    # an upload received and moved before its child opened it: left to the ordinary path
    gone = tmp_path / "received-already.part"
    verdict = judge_stream(_job(envelope, gone, sidecar=str(tmp_path / "no.envelope"),
                                stream=True, arrival_seconds=30))  # fmt: skip
    assert (verdict["ok"], verdict["reason"]) == (False, "missed")


def test_a_forged_footer_copy_is_caught(hashed_extracts: dict[str, Path], tmp_path: Path) -> None:
    """The copy is what the streamed checks read the layout from: one describing another
    (clean) file ahead of a bad one must not buy an acceptance."""
    honest = _regroup(hashed_extracts["housing"].read_bytes())
    areas = pq.read_table(io.BytesIO(honest)).column("a_area").to_pylist()
    bad = _regroup(hashed_extracts["housing"].read_bytes(), a_area=[*areas[:-1], "LONDON"])
    envelope, body = _sealed(bad)
    frame = read_frame_head(open_bytes(body, KEY))
    assert frame is not None and frame.tail is not None
    forged_tail = honest[-parquet_tail(honest[-8:]) :]
    plain = frame_prefix(frame.agreement, forged_tail) + bad
    forged = seal_bytes(plain, KEY.public_key())
    import hashlib

    envelope = replace(envelope, sealed_bytes=len(forged), sealed_sha256=hashlib.sha256(forged).hexdigest(),
                       enclave_key_fingerprint=key_fingerprint(KEY.public_key()))  # fmt: skip
    streamed = _streamed(tmp_path, envelope, forged, seed=4)
    assert streamed["ok"] is False, streamed
    assert _whole(tmp_path, envelope, forged)["ok"] is False


# --- the real worker, following a real upload -------------------------------------


@pytest.fixture
def server_and_worker(
    project_service: Service, tmp_path: Path
) -> Iterator[tuple[Service, str, ssl.SSLContext, Path]]:
    from service.tlscert import make_local_tls

    s = project_service
    tls = make_local_tls(tmp_path / "tls")
    port = free_port()
    env = service_env(s.settings, PPRL_WORKER_POLL_SECONDS="30")  # only the early path is quick
    server = start_server(env, tls, port, "--no-worker")
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [*_pprl(), "worker"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        _wait_for(lambda: "worker started" in log.read_text(), 60)
        context = ssl.create_default_context(cafile=str(tls.ca_cert))
        yield s, f"https://127.0.0.1:{port}", context, log
    finally:
        for proc in (worker, server):
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _pprl() -> list[str]:
    import sys

    return [sys.executable, "-m", "service.cli"]


def _wait_for(done: Any, seconds: float, show: Path | None = None) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, (
            f"timed out; {show}: {list(show.iterdir()) if show else ''}"
        )
        time.sleep(0.05)


def _events(log: Path, event: str) -> list[dict[str, Any]]:
    found = []
    for line in log.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == event:
            found.append(entry)
    return found


@pytest.mark.parametrize("digest_follows", [True, False], ids=["digest-after", "digest-ahead"])
def test_the_worker_decides_an_upload_while_it_arrives(
    server_and_worker: tuple[Service, str, ssl.SSLContext, Path],
    hashed_extracts: dict[str, Path],
    digest_follows: bool,
) -> None:
    """Either way an envelope gives the sealed digest: after the body (`pprl submit`,
    sealing while it sends) or in the header (the browser page, and extracts sealed to a
    file first)."""
    s, url, context, log = server_and_worker
    project = s.http.get(f"/v1/projects/{s.project_id}", headers=s.as_(s.admin)).json()
    key = s.http.app.state.pprl.enclave_public_key  # type: ignore[attr-defined]
    data = _regroup(hashed_extracts["housing"].read_bytes())
    headers, body = sealed_upload(data, project, key, digest_follows=digest_follows)
    assert Envelope.from_header(headers[ENVELOPE_HEADER]).digest_follows is digest_follows

    def slowly(cut_off: bool) -> Iterator[bytes]:
        for i in range(0, len(body), len(body) // 5 + 1):
            yield body[i : i + len(body) // 5 + 1]
            time.sleep(0.2)
            if cut_off and i > len(body) // 2:
                raise RuntimeError("the partner's connection dropped")

    def post(cut_off: bool) -> httpx.Response | None:
        try:
            return httpx.post(f"{url}/v1/projects/{s.project_id}/submissions",
                              content=slowly(cut_off), verify=context, timeout=60,
                              headers={**headers, "Authorization": f"Bearer {s.tokens['housing']}",
                                       "Content-Length": str(len(body))})  # fmt: skip
        except (httpx.HTTPError, RuntimeError):
            return None

    # cut off half way: the child gives up, nothing is kept or recorded
    assert post(cut_off=True) is None
    _wait_for(lambda: _events(log, "upload judged while arriving"), 30)
    assert [e["reason"] for e in _events(log, "upload judged while arriving")] == ["abandoned"]
    assert (
        s.http.get(f"/v1/projects/{s.project_id}/submissions", headers=s.as_(s.admin)).json() == []
    )
    _wait_for(lambda: not list(s.settings.incoming_dir.iterdir()), 10, s.settings.incoming_dir)

    # whole: accepted by the child that followed it, decided at once (the worker's own
    # poll is 30 s here), through the same audited transition as any other
    receipt = post(cut_off=False)
    assert receipt is not None and receipt.status_code == 202, receipt
    sub_url = f"/v1/projects/{s.project_id}/submissions/{receipt.json()['id']}"
    _wait_for(lambda: s.http.get(sub_url, headers=s.as_(s.tokens["housing"])).json()["status"]
              != "received", 10)  # fmt: skip
    sub = s.http.get(sub_url, headers=s.as_(s.tokens["housing"])).json()
    assert (
        sub["status"] == "accepted" and sub["rows"] == pq.read_metadata(io.BytesIO(data)).num_rows
    )
    arriving = _events(log, "upload judged while arriving")
    assert [e["accepted"] for e in arriving] == [False, True]
    judged = _events(log, "submission judged")
    assert [(e["submission"], e["verdict"]) for e in judged] == [(receipt.json()["id"], "accepted")]
    assert ("submission.accepted", "ok") in s.audit_actions()


def test_a_declared_size_reserves_no_memory_and_links_are_not_followed(
    hashed_extracts: dict[str, Path], tmp_path: Path
) -> None:
    """A partner may declare a 2 GB upload and send a trickle: the child that follows it
    holds what arrived, not what was declared. And the child opens only a file the API
    made: a link planted in incoming/ (say, to the enclave's key) is not followed."""
    from dataclasses import replace as swap

    from service.settings import Settings
    from service.worker.intake import judge_in_child

    envelope, body = _sealed(_regroup(hashed_extracts["housing"].read_bytes()), chunk=16 << 10)
    huge = swap(envelope, sealed_bytes=2 << 30)
    part, sidecar, writer = _arriving(tmp_path, body[: len(body) // 2], seed=11, stop_at=1.0)
    writer.join(10)  # half the body, then the API deletes both (as for a broken upload)
    sidecar.write_text("{}")  # ... but say the envelope stayed: the child must not wait long
    part.write_bytes(body[: len(body) // 2])
    settings = Settings(data_dir=tmp_path / "data")
    job = _job(huge, part, sidecar=str(sidecar), stream=True, arrival_seconds=1)
    verdict = judge_in_child(settings, job, huge.sealed_bytes)
    assert (verdict.ok, verdict.reason) == (False, "abandoned"), verdict
    assert 0 < verdict.peak_rss_mb < 400, verdict  # 2 GB declared, a few hundred KB held

    secret = tmp_path / "enclave.key"
    secret.write_bytes(b"not for anyone")
    link = tmp_path / "planted.part"
    link.symlink_to(secret)
    (tmp_path / "planted.envelope").write_text("{}")
    job = _job(envelope, link, sidecar=str(tmp_path / "planted.envelope"), stream=True,
               arrival_seconds=5)  # fmt: skip
    started = time.monotonic()
    assert judge_stream(job) == {"ok": False, "reason": "abandoned", "detail": ""}
    assert time.monotonic() - started < 2


def test_a_page_corrupt_where_the_validator_does_not_read_names_its_partner(
    hashed_extracts: dict[str, Path], tmp_path: Path
) -> None:
    """The validator decodes the columns it checks (identity tokens, attributes), not
    every token column: a page corrupt elsewhere is accepted, and the run that opens it
    fails with a sentence naming the partner that must submit again."""
    from service.worker.opening import SubmissionUnusable, open_accepted

    data = bytearray(_copies(hashed_extracts["housing"], 100))
    meta = pq.read_metadata(io.BytesIO(bytes(data)))
    column = meta.schema.to_arrow_schema().get_field_index("t_forename_prefix3")
    last = meta.row_group(meta.num_row_groups - 1)  # past the guard's first 20,000 rows
    at = last.column(column).data_page_offset + 4
    data[at : at + 48] = b"\xff" * 48
    envelope, body = _sealed(bytes(data))
    assert _whole(tmp_path, envelope, body)["ok"] is True  # the gap this test pins down
    blob = tmp_path / "accepted.sealed"
    blob.write_bytes(body)
    with pytest.raises(SubmissionUnusable, match="housing's submission has a corrupt data page"):
        open_accepted(blob, KEY, _project()["id"], POLICY, "housing")


def test_intake_waits_only_for_an_unnamed_upload_that_could_be_the_one(tmp_path: Path) -> None:
    """An upload whose digest follows it is filed under that digest only when its child
    has read the last byte. Intake, judging a received submission, waits for such a child
    only if its upload has all arrived and has the submission's size and terms: a long
    upload still arriving must never hold up the judgement of another."""
    from service.settings import Settings
    from service.worker.intake import Verdict
    from service.worker.streaming import EarlyIntake, _Early

    early = EarlyIntake(Settings(data_dir=tmp_path), None, "", lambda _: None)  # type: ignore[arg-type]
    terms = ("p", "spec")

    def unnamed(name: str, size: int, arriving: bool) -> _Early:
        sidecar = tmp_path / f"{name}.envelope"
        if arriving:
            sidecar.write_text("{}")
        upload = _Early(threading.Event(), terms=terms, size=size, sidecar=sidecar)
        early._unnamed[name] = upload
        return upload

    still_arriving = unnamed("slow", 1000, arriving=True)
    other_size = unnamed("other", 999, arriving=False)
    started = time.monotonic()
    assert early.take("a" * 64, terms, 1000) is None
    assert time.monotonic() - started < 1  # waited for neither
    assert not still_arriving.done.is_set() and not other_size.done.is_set()

    this_one = unnamed("mine", 1000, arriving=False)

    def child_finishes() -> None:
        time.sleep(0.3)
        this_one.verdict = Verdict(ok=True, sealed_sha256="b" * 64)
        with early._lock:
            del early._unnamed["mine"]
            early._uploads["b" * 64] = this_one
        this_one.done.set()

    threading.Thread(target=child_finishes).start()
    assert early.take("b" * 64, terms, 1000) == this_one.verdict  # waited for it
    assert early.take("b" * 64, ("p", "another spec"), 1000) is None  # not under other terms


def test_the_early_path_stops_looking_once_the_submission_is_recorded(
    project_service: Service, hashed_extracts: dict[str, Path]
) -> None:
    """Decided by the worker's own poll first, a submission is not looked for again and
    again: the early path stops when it finds the record, whatever its status (it once
    polled the database every 20 ms for 30 s, into the uploads that followed)."""
    from service.worker.streaming import EarlyIntake

    s = project_service
    r = s.upload(s.tokens["housing"], hashed_extracts["housing"].read_bytes())
    assert r.status_code == 202, r.text
    asked: list[str] = []
    early = EarlyIntake(s.settings, s.http.app.state.pprl.db, "", asked.append)  # type: ignore[attr-defined]
    early._decide_when_recorded(r.json()["sha256"])
    assert asked == [r.json()["id"]]  # received: decided
    assert s.judge() == 1  # (the ordinary path, standing in for the early one here)
    started = time.monotonic()
    early._decide_when_recorded(r.json()["sha256"])
    assert asked == [r.json()["id"]] and time.monotonic() - started < 1  # accepted: left alone


def test_a_digest_arriving_in_pieces_is_read_whole(
    server_and_worker: tuple[Service, str, ssl.SSLContext, Path],
    hashed_extracts: dict[str, Path],
) -> None:
    """The digest after the body may reach the API split across reads, even a read that
    holds only part of it: every piece counts (a chunk wholly inside the digest was
    once cut to its last bytes, refusing a sound upload)."""
    s, url, context, _log = server_and_worker
    project = s.http.get(f"/v1/projects/{s.project_id}", headers=s.as_(s.admin)).json()
    key = s.http.app.state.pprl.enclave_public_key  # type: ignore[attr-defined]
    headers, body = sealed_upload(hashed_extracts["housing"].read_bytes(), project, key)
    assert Envelope.from_header(headers[ENVELOPE_HEADER]).digest_follows
    cuts = [len(body) - 72, len(body) - 60, len(body) - 40, len(body) - 20, len(body) - 3]

    def pieces() -> Iterator[bytes]:
        for lo, hi in itertools.pairwise([0, *cuts, len(body)]):
            yield body[lo:hi]
            time.sleep(0.1)  # separate reads on the server's side

    r = httpx.post(f"{url}/v1/projects/{s.project_id}/submissions", content=pieces(),
                   verify=context, timeout=60,
                   headers={**headers, "Authorization": f"Bearer {s.tokens['housing']}",
                            "Content-Length": str(len(body))})  # fmt: skip
    assert r.status_code == 202, r.text
    assert r.json()["sha256"] == body[-64:-32].hex()


def test_a_lying_parquet_digest_after_the_body_is_refused_on_the_early_path(
    server_and_worker: tuple[Service, str, ssl.SSLContext, Path],
    hashed_extracts: dict[str, Path],
) -> None:
    """A child that follows an upload cannot compare the Parquet digest that follows the
    body (it has not arrived); the child accepts the extract it read, and intake compares
    the digest it computed with the one the API recorded: a partner's trailer naming
    another extract is rejected, decided at once on the early path (the worker's own
    poll is 30 s here), never accepted."""
    import hashlib

    s, url, context, log = server_and_worker
    project = s.http.get(f"/v1/projects/{s.project_id}", headers=s.as_(s.admin)).json()
    key = s.http.app.state.pprl.enclave_public_key  # type: ignore[attr-defined]
    data = _regroup(hashed_extracts["housing"].read_bytes())
    headers, body = sealed_upload(data, project, key)
    envelope = Envelope.from_header(headers[ENVELOPE_HEADER])
    assert envelope.digest_follows and envelope.payload_digest_follows
    lying = body[: envelope.sealed_bytes + 32] + hashlib.sha256(b"another extract").digest()

    def slowly() -> Iterator[bytes]:  # over 2 s: time for the child to start, under load
        for i in range(0, len(lying), len(lying) // 8 + 1):
            yield lying[i : i + len(lying) // 8 + 1]
            time.sleep(0.25)

    r = httpx.post(f"{url}/v1/projects/{s.project_id}/submissions", content=slowly(),
                   verify=context, timeout=60,
                   headers={**headers, "Authorization": f"Bearer {s.tokens['housing']}",
                            "Content-Length": str(len(lying))})  # fmt: skip
    assert r.status_code == 202, r.text
    sub_url = f"/v1/projects/{s.project_id}/submissions/{r.json()['id']}"
    # decided at once on the early path; 40 s lets the worker's own poll (30 s) decide
    # instead, so a slow machine fails on the assertions below, which say why
    _wait_for(lambda: s.http.get(sub_url, headers=s.as_(s.tokens["housing"])).json()["status"]
              != "received", 40)  # fmt: skip
    sub = s.http.get(sub_url, headers=s.as_(s.tokens["housing"])).json()
    assert sub["status"] == "rejected", sub
    assert "differs from the envelope's digest" in (sub["reason"] or ""), sub
    # the child did accept the bytes it read: the refusal is intake's comparison
    assert [e["accepted"] for e in _events(log, "upload judged while arriving")] == [True]
    assert ("submission.rejected", "rejected") in s.audit_actions()
