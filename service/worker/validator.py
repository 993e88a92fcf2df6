"""The enclave's validator, run in a child process of the worker.

The worker forks it from a fork server that has these modules imported
(:func:`run_job`; ``service.worker.intake``), or it runs standalone as ``python -m
service.worker.validator --memory BYTES --cpu SECONDS`` with the job as JSON on stdin.
Either way it first limits its own address space and CPU time, then opens the sealed
payload in memory (the enclave private key arrives with the job, never on disk or the
command line), checks that the sealed agreement, the envelope and the project agree, runs
the extract checks of ``service.submissions.validate``, and answers one verdict. A
hostile file ends this process, never the worker. It imports no database or web code.
"""

from __future__ import annotations

import hashlib
import json
import resource
import sys
from pathlib import Path
from typing import Any

__all__ = ["judge", "main", "run_job"]


class _Reject(Exception):
    def __init__(self, detail: str, reason: str) -> None:
        super().__init__(detail)
        self.detail, self.reason = detail, reason


def judge(job: dict[str, Any]) -> dict[str, Any]:
    """Open and validate one sealed submission; return the verdict (never raises)."""
    import pyarrow as pa
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from linkage.spec import parse_spec
    from service.crypto.envelope import Envelope, EnvelopeError, split_frame
    from service.crypto.sealing import SealError, open_sealed
    from service.submissions.validate import ExtractRejected, RepeatLimits, check_extract

    try:
        key = X25519PrivateKey.from_private_bytes(bytes.fromhex(job["private_key"]))
        envelope = Envelope.from_json(job["envelope"])
        try:
            plaintext = b"".join(open_sealed(Path(job["path"]), key))
        except FileNotFoundError:
            raise _Reject("the sealed payload is missing from storage", "missing") from None
        except SealError:
            raise _Reject(
                "the sealed payload does not open with the enclave key (sealed to another "
                "key, or altered in storage)",
                "unsealable",
            ) from None
        try:
            agreement, parquet = split_frame(plaintext)
        except EnvelopeError as exc:
            raise _Reject(str(exc), "agreement") from None
        if agreement != envelope.agreement():
            raise _Reject(
                "the sealed agreement differs from the envelope that came with it", "agreement"
            )
        if hashlib.sha256(parquet).hexdigest() != envelope.payload_sha256:
            raise _Reject("the sealed extract differs from the envelope's digest", "agreement")
        expect = job["project"]
        for field, label in (
            ("project_id", "project"),
            ("spec_fingerprint", "spec"),
            ("policy_fingerprint", "disclosure policy"),
        ):
            if getattr(agreement, field) != expect[field]:
                raise _Reject(f"the partner agreed to another {label} than the project's", field)
        spec = parse_spec(expect["spec_json"])
        limits = RepeatLimits(share=job["max_identity_share"], floor=job["max_identity_floor"])
        buffer = pa.py_buffer(parquet)
        del plaintext
        try:
            check = check_extract(buffer, spec, expect["key_check_value"], limits)
        except ExtractRejected as exc:
            raise _Reject(exc.detail, exc.reason) from None
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
    except _Reject as exc:
        return {"ok": False, "reason": exc.reason, "detail": exc.detail}
    except MemoryError:
        return {"ok": False, "reason": "memory_limit", "detail": ""}


def _limit_self(argv: list[str]) -> None:
    """Apply ``--memory BYTES --cpu SECONDS`` to this process before anything is read.

    Set here rather than in a ``preexec_fn``: the worker has threads (heartbeat, signer),
    and running Python between fork and exec in a threaded process can deadlock."""
    options = dict(zip(argv[::2], argv[1::2], strict=False))
    memory, cpu = int(options["--memory"]), int(options["--cpu"])
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_job(conn: Any, memory: int, cpu: int, job: dict[str, Any]) -> None:
    """Entry point in a child forked by the worker's fork server (modules preloaded, so no
    interpreter start-up per submission): limit this process, judge, send the verdict."""
    _limit_self(["--memory", str(memory), "--cpu", str(cpu)])
    try:
        verdict = judge(job)
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
