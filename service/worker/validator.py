"""The enclave's validator, run in a child process of the worker.

The worker forks it from a fork server that has these modules imported
(:func:`run_job`; ``service.worker.intake``, and ``service.worker.streaming`` for an
upload still arriving, :func:`judge_stream`), or it runs standalone as ``python -m
service.worker.validator --memory BYTES --cpu SECONDS`` with the job as JSON on stdin.
Either way it first limits its own address space and CPU time, then opens the sealed
payload in memory (the enclave private key arrives with the job, never on disk or the
command line), checks that the sealed agreement, the envelope and the project agree, runs
the extract checks of ``service.submissions.validate``, and answers one verdict. A
hostile file ends this process, never the worker. It imports no database or web code.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import mmap
import os
import queue
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["PAYLOAD_DIFFERS", "judge", "judge_stream", "main", "run_job"]

#: the reason given when the Parquet inside is not the one the envelope's digest names
PAYLOAD_DIFFERS = "the sealed extract differs from the envelope's digest"


class _Reject(Exception):
    def __init__(self, detail: str, reason: str) -> None:
        super().__init__(detail)
        self.detail, self.reason = detail, reason


def judge(job: dict[str, Any]) -> dict[str, Any]:
    """Open and validate one sealed submission; return the verdict (never raises)."""
    import pyarrow as pa
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from service.crypto.envelope import Envelope, EnvelopeError, split_frame
    from service.crypto.sealing import SealError, open_hashed
    from service.submissions.validate import ExtractRejected

    try:
        key = X25519PrivateKey.from_private_bytes(bytes.fromhex(job["private_key"]))
        envelope = Envelope.from_json(job["envelope"])
        try:
            # hashed as read: an acceptance names the very bytes judged
            plaintext, sealed_sha256 = open_hashed(Path(job["path"]), key)
        except FileNotFoundError:
            raise _Reject("the sealed payload is missing from storage", "missing") from None
        except SealError:
            raise _unsealable() from None
        try:
            agreement, parquet = split_frame(plaintext)
        except EnvelopeError as exc:
            raise _Reject(str(exc), "agreement") from None
        _check_agreement(agreement, envelope, job["project"])
        payload_sha256 = hashlib.sha256(parquet).hexdigest()
        if payload_sha256 != envelope.payload_sha256:
            raise _Reject(PAYLOAD_DIFFERS, "agreement")
        buffer = pa.py_buffer(parquet)
        del plaintext
        checker = _checker_for(buffer, job)
        checker.advance(buffer.size)
        verdict = _accepted(checker, agreement)
        return {**verdict, "sealed_sha256": sealed_sha256, "payload_sha256": payload_sha256}
    except (_Reject, ExtractRejected) as exc:
        return {"ok": False, "reason": exc.reason, "detail": exc.detail}
    except MemoryError:
        return {"ok": False, "reason": "memory_limit", "detail": ""}


def judge_stream(job: dict[str, Any]) -> dict[str, Any]:
    """:func:`judge` on an upload still arriving at ``job["path"]``: each sealed chunk is
    opened as it lands and each row group checked once its bytes are in (a ``PPRLSUB2``
    frame says where they lie; a ``PPRLSUB1`` one is checked when complete). The verdict
    also carries ``sealed_sha256``, the digest of exactly the bytes read; an upload
    abandoned half way answers ``abandoned``."""
    import pyarrow as pa
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from service.crypto.envelope import Envelope, EnvelopeError, read_frame_head
    from service.crypto.sealing import SealError, open_stream, opened_size
    from service.submissions.validate import ExtractRejected

    try:
        key = X25519PrivateKey.from_private_bytes(bytes.fromhex(job["private_key"]))
        envelope = Envelope.from_json(job["envelope"])
        part, sidecar = Path(job["path"]), Path(job["sidecar"])
        hashes = _Hashes()
        stall = job["arrival_seconds"]
        with (
            contextlib.closing(hashes),
            _Growing(part, sidecar, envelope.sealed_bytes, stall, hashes) as src,
        ):
            plain: mmap.mmap | None = None
            filled, frame, checker = 0, None, None
            try:
                for chunk in open_stream(src, key, "upload"):  # type: ignore[arg-type]
                    if plain is None:  # the first chunk is full unless it is the only one
                        # anonymous memory is zero pages until written: what the child
                        # holds grows with what arrived, not with the size declared
                        plain = mmap.mmap(
                            -1, max(opened_size(envelope.sealed_bytes, len(chunk)), 1)
                        )
                    plain[filled : filled + len(chunk)] = chunk
                    filled += len(chunk)
                    if frame is None:
                        frame = read_frame_head(memoryview(plain)[:filled])
                        if frame is None:
                            continue
                        _check_agreement(frame.agreement, envelope, job["project"])
                        hashes.payload(memoryview(plain)[frame.parquet_offset : filled])
                        if frame.tail is not None:  # the copy where the footer will land
                            _place_tail(plain, frame.tail, filled)
                    else:
                        hashes.payload(chunk)
                    start = frame.parquet_offset
                    if checker is None and frame.tail is not None and filled >= start + 4:
                        parquet = pa.py_buffer(memoryview(plain)[start:])
                        checker = _checker_for(parquet, job)
                    if checker is not None:
                        checker.advance(filled - start)
            except SealError:
                raise _unsealable() from None
            except EnvelopeError as exc:
                raise _Reject(str(exc), "agreement") from None
        sealed_sha256, payload_sha256 = hashes.finish()
        if plain is None or frame is None or filled != len(plain):
            raise _Reject("the sealed payload is truncated", "agreement")
        start = frame.parquet_offset
        if frame.tail is not None and bytes(plain[len(plain) - len(frame.tail) :]) != frame.tail:
            raise _Reject(
                "the sealed payload's footer copy differs from the extract's footer", "agreement"
            )
        # a digest that follows the body is not known yet: intake compares it with the one
        # the API records (service.worker.intake.for_bytes)
        if not envelope.payload_digest_follows and payload_sha256 != envelope.payload_sha256:
            raise _Reject(PAYLOAD_DIFFERS, "agreement")
        if checker is None:  # a v1 frame: the footer is known only now
            checker = _checker_for(pa.py_buffer(memoryview(plain)[start:]), job)
        checker.advance(len(plain) - start)
        verdict = _accepted(checker, frame.agreement)
        return {**verdict, "sealed_sha256": sealed_sha256, "payload_sha256": payload_sha256}
    except _Abandoned:
        return {"ok": False, "reason": "abandoned", "detail": ""}
    except _Missed:
        return {"ok": False, "reason": "missed", "detail": ""}
    except (_Reject, ExtractRejected) as exc:
        return {"ok": False, "reason": exc.reason, "detail": exc.detail}
    except MemoryError:
        return {"ok": False, "reason": "memory_limit", "detail": ""}


class _Hashes:
    """SHA-256 of the sealed bytes and of the Parquet inside, kept in a thread of their
    own: hashlib lets go of the GIL, so while the upload's last bytes are checked the
    hashing runs on the other core. Hashed regions are never written again."""

    def __init__(self) -> None:
        self._sealed, self._payload = hashlib.sha256(), hashlib.sha256()
        self._queue: queue.SimpleQueue[tuple[Any, Any] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def sealed(self, data: bytes) -> None:
        self._queue.put((self._sealed, data))

    def payload(self, data: bytes | memoryview) -> None:
        self._queue.put((self._payload, data))

    def finish(self) -> tuple[str, str]:
        """(sealed SHA-256, payload SHA-256) of everything handed over."""
        self.close()
        self._thread.join()
        return self._sealed.hexdigest(), self._payload.hexdigest()

    def close(self) -> None:
        """Let the thread end once it has hashed what it was given (idempotent)."""
        if self._thread.is_alive():
            self._queue.put(None)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            item[0].update(item[1])


class _Abandoned(Exception):
    """The upload stopped arriving: the API deleted its partial file, or it stalled."""


class _Missed(Exception):
    """The upload was over (received, or refused) before the child could open it."""


class _Growing:
    """A reader of an upload the API is still writing to ``path``, up to ``size`` bytes.

    A read waits for its bytes. The stream ends (``_Abandoned``) when no more can come:
    the file was unlinked (the API deletes a refused or broken upload), the API is done
    with it (it removes the ``sidecar`` envelope when the body ends) and it is still
    short, or nothing arrived for ``stall_seconds``. Hands what it reads to ``hashes``."""

    _POLL = 0.002

    def __init__(
        self, path: Path, sidecar: Path, size: int, stall_seconds: float, hashes: _Hashes
    ) -> None:
        self.path, self.sidecar, self.size, self.stall = path, sidecar, size, stall_seconds
        self.hashes = hashes
        self._pos = 0
        self._fh: Any = None

    def __enter__(self) -> _Growing:
        deadline = time.monotonic() + self.stall
        while self._fh is None:
            try:
                # never through a link: only a file the API itself created in incoming/
                fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
                self._fh = os.fdopen(fd, "rb", buffering=0)
            except FileNotFoundError:
                if not self.sidecar.exists():  # received and moved already (a small
                    raise _Missed from None  # upload), or refused: nothing to follow
                if time.monotonic() > deadline:
                    raise _Abandoned from None
                time.sleep(self._POLL)
            except OSError:  # a link, or not ours to read: left to the ordinary path
                raise _Abandoned from None
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.close()

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes, fewer only at ``size``."""
        n = min(n, self.size - self._pos)
        parts, wanted = [], n
        last_growth = time.monotonic()
        finished = False
        while wanted:
            data = self._fh.read(wanted)
            if data:
                parts.append(data)
                wanted -= len(data)
                last_growth = time.monotonic()
                continue
            if finished or os.fstat(self._fh.fileno()).st_nlink == 0:
                raise _Abandoned
            if not self.sidecar.exists():
                finished = True  # one more read: bytes written just before it went
                continue
            if time.monotonic() - last_growth > self.stall:
                raise _Abandoned
            time.sleep(self._POLL)
        out = b"".join(parts)
        self._pos += len(out)
        self.hashes.sealed(out)
        return out


def _place_tail(plain: mmap.mmap, tail: bytes, filled: int) -> None:
    """Put the footer copy at the end of the payload, where no real byte is yet."""
    at = len(plain) - len(tail)
    if at < 0:
        raise _Reject("the sealed payload's footer copy is longer than the extract", "agreement")
    low = max(filled, at)
    plain[low:] = tail[low - at :]


def _unsealable() -> _Reject:
    return _Reject(
        "the sealed payload does not open with the enclave key (sealed to another "
        "key, or altered in storage)",
        "unsealable",
    )


def _check_agreement(agreement: Any, envelope: Any, expect: dict[str, Any]) -> None:
    """The sealed agreement is the envelope's and names the project's terms."""
    if agreement != envelope.agreement():
        raise _Reject(
            "the sealed agreement differs from the envelope that came with it", "agreement"
        )
    for field, label in (
        ("project_id", "project"),
        ("spec_fingerprint", "spec"),
        ("policy_fingerprint", "disclosure policy"),
    ):
        if getattr(agreement, field) != expect[field]:
            raise _Reject(f"the partner agreed to another {label} than the project's", field)


def _checker_for(buffer: Any, job: dict[str, Any]) -> Any:
    """An ExtractChecker of ``buffer`` under the job's project (raises ExtractRejected)."""
    from linkage.spec import parse_spec
    from service.submissions.validate import ExtractChecker, RepeatLimits

    expect = job["project"]
    limits = RepeatLimits(share=job["max_identity_share"], floor=job["max_identity_floor"])
    return ExtractChecker(
        buffer, parse_spec(expect["spec_json"]), expect["key_check_value"], limits
    )


def _accepted(checker: Any, agreement: Any) -> dict[str, Any]:
    """The verdict on a checked extract whose manifest must match the sealed agreement
    (raises ExtractRejected or _Reject)."""
    check = checker.finish()
    manifest = check.manifest
    if (manifest.spec_fingerprint, manifest.key_check_value, manifest.rows_written) != (
        agreement.spec_fingerprint,
        agreement.key_check_value,
        agreement.rows,
    ):
        raise _Reject("the extract's manifest differs from the sealed agreement", "agreement")
    return {
        "ok": True,
        "rows": check.rows,
        "rows_rejected": manifest.rows_rejected,
        "key_check_value": manifest.key_check_value,
        "tool_version": manifest.tool_version,
    }


def _limit_self(argv: list[str]) -> None:
    """Apply ``--memory BYTES --cpu SECONDS`` to this process before anything is read.

    Set here rather than in a ``preexec_fn``: the worker has threads (heartbeat, signer),
    and running Python between fork and exec in a threaded process can deadlock."""
    options = dict(zip(argv[::2], argv[1::2], strict=False))
    memory, cpu = int(options["--memory"]), int(options["--cpu"])
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_MAX = 32 << 20  # glibc's ceiling for it on 64-bit


def _keep_freed_memory() -> None:
    """Let this one-upload process reuse the memory it frees instead of handing it back.

    By default glibc gives every freed block of more than 128 KB (up to 32 MB, as it
    adapts) straight back to the kernel, so each new array of a row group's or a whole
    column's size is faulted in afresh, page by page, zeroed by the kernel: some 30,000
    page faults in the child of a 1M-row upload, on cores the API and the client need
    at that moment. The child ends after one upload and its address space is capped
    (RLIMIT_AS), so keeping what it freed costs nothing. Without glibc (another libc),
    nothing changes."""
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)  # also stops the adapting
    mallopt(_M_TRIM_THRESHOLD, 1 << 30)


def run_job(conn: Any, memory: int, cpu: int, job: dict[str, Any]) -> None:
    """Entry point in a child forked by the worker's fork server (modules preloaded, so no
    interpreter start-up per submission): limit this process, judge, send the verdict."""
    _limit_self(["--memory", str(memory), "--cpu", str(cpu)])
    _keep_freed_memory()
    try:
        verdict = judge_stream(job) if job.get("stream") else judge(job)
    except MemoryError:
        verdict = {"ok": False, "reason": "memory_limit", "detail": ""}
    except Exception as exc:  # the type only: a message could quote the file
        verdict = {"ok": False, "reason": "internal", "detail": type(exc).__name__}
    # this child's own peak (it includes what the fork server had mapped at the fork)
    verdict["peak_rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    conn.send(verdict)
    conn.close()


def main() -> None:
    _limit_self(sys.argv[1:])
    job = json.loads(sys.stdin.read())
    try:
        verdict = judge(job)
    except MemoryError:
        verdict = {"ok": False, "reason": "memory_limit", "detail": ""}
    except Exception as exc:  # the type only: a message could quote the file
        verdict = {"ok": False, "reason": "internal", "detail": type(exc).__name__}
    sys.stdout.write(json.dumps(verdict))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
