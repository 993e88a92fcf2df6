"""The manifest that travels inside every hashed extract, and the key check value.

The manifest is JSON stored in the Parquet file's key-value metadata under
:data:`MANIFEST_KEY`. It lets the service reject an extract made under another spec
(``spec_fingerprint``) or another secret (``key_check_value``) at upload, instead of the
mistake showing up later as zero overlap.

The key check value is an HMAC of a fixed label under the project secret: it identifies
the secret without revealing it (HMAC is a PRF), so it can be printed, emailed and stored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import asdict, dataclass
from typing import Any

from linkage.errors import ManifestError

__all__ = [
    "FORMAT",
    "KCV_LABEL",
    "MANIFEST_KEY",
    "Manifest",
    "key_check_value",
]

#: Parquet key-value metadata key holding the manifest JSON.
MANIFEST_KEY = b"pprl.manifest"
#: Format tag of a hashed extract; bump when the column contract changes.
FORMAT = "pprl-hashed/1"
#: The fixed label MACed under the secret to make the key check value.
KCV_LABEL = b"pprl key check value v1"


def key_check_value(key: bytes) -> str:
    """The secret's key check value: first 16 hex digits of HMAC-SHA256(key, label)."""
    return hmac.new(key, KCV_LABEL, hashlib.sha256).hexdigest()[:16]


@dataclass(frozen=True)
class Manifest:
    """What a hashed extract says about itself."""

    spec_fingerprint: str
    key_check_value: str
    rows_written: int
    rows_rejected: int
    tool_version: str
    created_at: str
    format: str = FORMAT

    def to_json(self) -> bytes:
        """Canonical JSON bytes for the Parquet metadata."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes | str | None) -> Manifest:
        """Parse manifest JSON; raise :class:`ManifestError` with a clear reason."""
        if raw is None:
            raise ManifestError(
                "the file has no pprl manifest: make it with `pprl hash` (it records the spec "
                "fingerprint and key check value)"
            )
        try:
            data: Any = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise ManifestError("the pprl manifest is not valid JSON") from None
        if not isinstance(data, dict):
            raise ManifestError("the pprl manifest is not a JSON object")
        if data.get("format") != FORMAT:
            raise ManifestError(
                f"unsupported extract format {str(data.get('format'))[:40]!r} "
                f"(this service reads {FORMAT!r})"
            )
        try:
            manifest = cls(
                spec_fingerprint=str(data["spec_fingerprint"]),
                key_check_value=str(data["key_check_value"]),
                rows_written=int(data["rows_written"]),
                rows_rejected=int(data["rows_rejected"]),
                tool_version=str(data["tool_version"]),
                created_at=str(data["created_at"]),
            )
        except KeyError as exc:
            raise ManifestError(f"the pprl manifest lacks {exc.args[0]!r}") from None
        except (TypeError, ValueError):
            raise ManifestError("the pprl manifest has a field of the wrong type") from None
        if manifest.rows_written < 0 or manifest.rows_rejected < 0:
            raise ManifestError("the pprl manifest has a negative row count")
        return manifest
