"""Partner side of a sealed upload: drop ``row_ref``, frame, seal, and write the envelope.

``pprl submit`` calls :func:`seal_extract` before a byte leaves the machine. A hashed
Parquet as `pprl hash` writes it is sealed as it is, behind a copy of its footer (so the
enclave can check each row group while the upload is still arriving); an older extract
with ``row_ref`` inside is rewritten without it (the partner's own row numbers stay
local: the enclave does not need them) straight into a :class:`SealWriter`, so no
unsealed copy is written anywhere, and its frame carries no footer copy (the footer is
not known until the rewrite ends). The sealed file is then streamed to the API with its
envelope.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from linkage.encode import read_manifest
from linkage.spec import ROW_REF_COLUMN
from service.crypto.envelope import (
    Agreement,
    Envelope,
    frame_prefix,
    key_fingerprint,
    parquet_tail,
)
from service.crypto.sealing import SealWriter

__all__ = ["SealedExtract", "seal_extract"]


@dataclass(frozen=True)
class SealedExtract:
    """The sealed payload on disk and the envelope that describes it."""

    path: Path
    envelope: Envelope


class _Hashing:
    """A write-through sink that hashes and counts what passes."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.sha256, self.size, self.closed = inner, hashlib.sha256(), 0, False

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.sha256.update(data)
        self.size += len(data)
        self.inner.write(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        return None

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True


def seal_extract(
    source: Path,
    target: Path,
    recipient: X25519PublicKey,
    project_id: str,
    policy_fingerprint: str,
    chunk: int = 1 << 20,
) -> SealedExtract:
    """Seal the hashed extract ``source`` to ``recipient`` into ``target`` (mode 0600)."""
    manifest = read_manifest(source)
    agreement = Agreement(
        project_id=project_id,
        spec_fingerprint=manifest.spec_fingerprint,
        key_check_value=manifest.key_check_value,
        policy_fingerprint=policy_fingerprint,
        rows=manifest.rows_written,
        rows_rejected=manifest.rows_rejected,
        tool_version=manifest.tool_version,
    )
    extract = pq.ParquetFile(source)
    rewrite = ROW_REF_COLUMN in extract.schema_arrow.names
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as raw:
        sealed = _Hashing(raw)
        writer = SealWriter(sealed, recipient, chunk)  # type: ignore[arg-type]
        parquet = _Hashing(writer)
        if rewrite:
            writer.write(frame_prefix(agreement))
            _write_without_row_ref(extract, parquet)
        else:
            with source.open("rb") as fh:
                writer.write(frame_prefix(agreement, _footer_copy(fh)))
                fh.seek(0)
                while block := fh.read(1 << 20):
                    parquet.write(block)
        writer.close()
    envelope = Envelope(
        **{k: v for k, v in agreement.__dict__.items() if k != "format"},
        enclave_key_fingerprint=key_fingerprint(recipient),
        sealed_bytes=sealed.size,
        sealed_sha256=sealed.sha256.hexdigest(),
        payload_sha256=parquet.sha256.hexdigest(),
    )
    return SealedExtract(path=target, envelope=envelope)


def _footer_copy(fh: BinaryIO) -> bytes:
    """The Parquet file's footer (metadata, its length and the magic), read from its end."""
    fh.seek(-8, os.SEEK_END)
    size = parquet_tail(fh.read(8))
    fh.seek(-size, os.SEEK_END)
    return fh.read(size)


def _write_without_row_ref(pf: pq.ParquetFile, sink: _Hashing) -> None:
    keep = [n for n in pf.schema_arrow.names if n != ROW_REF_COLUMN]
    meta = {k: v for k, v in (pf.schema_arrow.metadata or {}).items() if k != b"ARROW:schema"}
    schema = pa.schema([pf.schema_arrow.field(n) for n in keep], metadata=meta)
    out: BinaryIO = sink  # type: ignore[assignment]
    # as `pprl hash` writes it: low-entropy tokens (sex, birth year, district) repeat, and
    # dictionary pages + zstd keep a 1M-row extract near 60 MB instead of 350 MB
    with pq.ParquetWriter(out, schema, compression="zstd") as writer:
        for index in range(pf.num_row_groups):
            writer.write_table(pf.read_row_group(index, columns=keep).replace_schema_metadata(
                schema.metadata))  # fmt: skip
        # the manifest lives in the file's key-value metadata, not the Arrow schema
        writer.add_key_value_metadata(
            {k: v for k, v in (pf.metadata.metadata or {}).items() if k != b"ARROW:schema"}
        )
