"""Test helper: build a sealed upload (envelope header + sealed body) the way `pprl submit`
does, also for bytes that are not a valid extract (so the enclave's validator sees them).

Like `pprl submit`, an extract without ``row_ref`` goes with its digests after the body
(``"sealed_sha256": "follows"``, and the Parquet's) unless ``digest_follows=False`` asks
for them in the envelope (as the browser page, and anything sealed to a file first,
sends them)."""

from __future__ import annotations

import hashlib
import io
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from linkage.manifest import MANIFEST_KEY, Manifest
from service.cli.sealed_extract import needs_rewrite, seal_extract, stream_extract
from service.crypto.envelope import (
    ENVELOPE_HEADER,
    Agreement,
    Envelope,
    frame_prefix,
    key_fingerprint,
)
from service.crypto.sealing import seal_bytes


def _manifest(data: bytes) -> Manifest | None:
    try:
        meta = pq.read_metadata(io.BytesIO(data)).metadata or {}
        return Manifest.from_json(meta.get(MANIFEST_KEY))
    except Exception:
        return None


def sealed_upload(
    data: bytes,
    project: dict[str, Any],
    recipient: X25519PublicKey,
    *,
    strip_row_ref: bool = True,
    digest_follows: bool = True,
    **envelope_changes: Any,
) -> tuple[dict[str, str], bytes]:
    """Headers and body of a sealed upload of ``data`` to ``project`` (its JSON)."""
    manifest = _manifest(data)
    # an envelope given its own digests (a test's lie) carries them in the header
    lies = {"sealed_sha256", "payload_sha256"} & set(envelope_changes)
    digest_follows = digest_follows and not lies
    if manifest is not None and strip_row_ref:
        with tempfile.TemporaryDirectory() as tmp:
            source = Path(tmp) / "in.parquet"
            source.write_bytes(data)
            if digest_follows and not needs_rewrite(source):
                stream = stream_extract(source, recipient, project["id"],
                                        project["policy_fingerprint"])  # fmt: skip
                envelope, body = stream.envelope, b"".join(stream.body())
            else:
                done = seal_extract(source, Path(tmp) / "out.sealed", recipient, project["id"],
                                    project["policy_fingerprint"])  # fmt: skip
                envelope, body = done.envelope, done.path.read_bytes()
    else:
        agreement = Agreement(
            project_id=project["id"],
            spec_fingerprint=manifest.spec_fingerprint if manifest else project["spec_fingerprint"],
            key_check_value=manifest.key_check_value if manifest
            else (project["key_check_value"] or "0" * 16),
            policy_fingerprint=project["policy_fingerprint"],
            rows=manifest.rows_written if manifest else 1000,  # a claim the enclave checks
            rows_rejected=manifest.rows_rejected if manifest else 0,
            tool_version=manifest.tool_version if manifest else "test",
        )  # fmt: skip
        body = seal_bytes(frame_prefix(agreement) + data, recipient)
        envelope = Envelope(
            **{k: v for k, v in agreement.__dict__.items() if k != "format"},
            enclave_key_fingerprint=key_fingerprint(recipient),
            sealed_bytes=len(body),
            sealed_sha256=hashlib.sha256(body).hexdigest(),
            payload_sha256=hashlib.sha256(data).hexdigest(),
        )
    envelope = replace(envelope, **envelope_changes)
    headers = {ENVELOPE_HEADER: envelope.to_header(), "Content-Type": "application/vnd.pprl.sealed"}
    return headers, body
