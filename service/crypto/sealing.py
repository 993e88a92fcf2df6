"""Sealing files to the enclave: X25519 ECDH + HKDF-SHA256 + AES-256-GCM, in chunks.

Format (all integers big-endian)::

    header = MAGIC(12) | ephemeral X25519 public key(32) | salt(16) | chunk size(4)
    body   = chunk_0 | chunk_1 | ... | chunk_n       each = AES-GCM(plaintext) + tag(16)

The file key is HKDF(ECDH(ephemeral, enclave), salt, info = label | both public keys).
Chunk i is encrypted with nonce = i (11 bytes) | last-flag (1 byte) and the header as
associated data. So every chunk is authenticated; a reordered chunk fails (wrong
counter), a truncated file fails (no chunk carries the last flag), appended bytes fail,
and a changed header fails. Memory use is one chunk, whatever the file size.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "DEFAULT_CHUNK",
    "MAGIC",
    "HashingReader",
    "SealError",
    "SealWriter",
    "open_bytes",
    "open_hashed",
    "open_sealed",
    "open_stream",
    "opened_size",
    "seal_bytes",
    "seal_file",
    "seal_pieces",
    "seal_stream",
    "sealed_size",
]

MAGIC = b"PPRL-SEAL-v1"
DEFAULT_CHUNK = 1 << 20
_TAG = 16
_HEADER = len(MAGIC) + 32 + 16 + 4
_MAX_CHUNK = 64 << 20


class SealError(Exception):
    """A sealed blob is corrupt, truncated, reordered or sealed to another key."""


def _raw(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _file_key(shared: bytes, salt: bytes, ephemeral: bytes, recipient: bytes) -> AESGCM:
    hkdf = HKDF(hashes.SHA256(), 32, salt, b"pprl seal v1" + ephemeral + recipient)
    return AESGCM(hkdf.derive(shared))


def _nonce(index: int, last: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def seal_pieces(
    source: BinaryIO, recipient: X25519PublicKey, chunk: int = DEFAULT_CHUNK
) -> Iterator[bytes]:
    """The sealed blob of everything read from ``source``, piece by piece: the header,
    then each chunk as soon as it is sealed (one chunk is read ahead, so that the last one
    carries the last flag). For sending while sealing: nothing is buffered beyond that."""
    ephemeral = X25519PrivateKey.generate()
    eph_raw, rec_raw = _raw(ephemeral.public_key()), _raw(recipient)
    salt = os.urandom(16)
    header = MAGIC + eph_raw + salt + struct.pack(">I", chunk)
    aead = _file_key(ephemeral.exchange(recipient), salt, eph_raw, rec_raw)
    yield header
    index = 0
    current = source.read(chunk)
    while True:
        following = source.read(chunk) if len(current) == chunk else b""
        last = not following
        yield aead.encrypt(_nonce(index, last), current, header)
        if last:
            return
        current = following
        index += 1


def seal_stream(
    source: BinaryIO, sink: BinaryIO, recipient: X25519PublicKey, chunk: int = DEFAULT_CHUNK
) -> str:
    """Seal everything read from ``source`` into ``sink``; return the plaintext's SHA-256."""
    reader = HashingReader(source)
    for piece in seal_pieces(reader, recipient, chunk):  # type: ignore[arg-type]
        sink.write(piece)
    return reader.digest.hexdigest()


class SealWriter:
    """A file-like sink that seals what is written to it, chunk by chunk, into ``sink``.

    Same format as :func:`seal_stream`; lets a producer (a Parquet writer) stream into
    the sealed file without a plaintext copy on disk. One chunk is held back until the
    next write or :meth:`close` so the final chunk can carry the last flag.
    """

    def __init__(
        self, sink: BinaryIO, recipient: X25519PublicKey, chunk: int = DEFAULT_CHUNK
    ) -> None:
        ephemeral = X25519PrivateKey.generate()
        eph_raw, rec_raw = _raw(ephemeral.public_key()), _raw(recipient)
        salt = os.urandom(16)
        self._header = MAGIC + eph_raw + salt + struct.pack(">I", chunk)
        self._aead = _file_key(ephemeral.exchange(recipient), salt, eph_raw, rec_raw)
        self._sink, self._chunk = sink, chunk
        self._pending = bytearray()
        self._index = 0
        self._written = 0
        self.closed = False
        sink.write(self._header)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Buffer ``data``; seal every full chunk except the newest."""
        if self.closed:
            raise ValueError("write to a closed SealWriter")
        self._pending += data
        while len(self._pending) > self._chunk:
            with memoryview(self._pending) as view:  # sealed from the buffer, no copy
                self._emit(view[: self._chunk], last=False)
            del self._pending[: self._chunk]
        self._written += len(data)
        return len(data)

    def tell(self) -> int:
        return self._written

    def flush(self) -> None:
        return None

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        """Seal the final chunk (with the last flag); does not close ``sink``."""
        if not self.closed:
            self._emit(bytes(self._pending), last=True)
            self._pending.clear()
            self.closed = True

    def _emit(self, plain: bytes | memoryview, last: bool) -> None:
        self._sink.write(self._aead.encrypt(_nonce(self._index, last), plain, self._header))
        self._index += 1


def seal_file(
    source: Path, target: Path, recipient: X25519PublicKey, chunk: int = DEFAULT_CHUNK
) -> str:
    """Seal ``source`` to ``target`` atomically (temp name, fsync, rename); return SHA-256."""
    tmp = target.with_name(f".{target.name}.partial")
    try:
        with source.open("rb") as src, tmp.open("xb") as dst:
            os.chmod(tmp, 0o600)
            digest = seal_stream(src, dst, recipient, chunk)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return digest


def seal_bytes(data: bytes, recipient: X25519PublicKey, chunk: int = DEFAULT_CHUNK) -> bytes:
    """Seal a small in-memory value (same format as a sealed file)."""
    sink = io.BytesIO()
    seal_stream(io.BytesIO(data), sink, recipient, chunk)
    return sink.getvalue()


def open_bytes(blob: bytes, private_key: X25519PrivateKey, name: str = "blob") -> bytes:
    """Open a value sealed by :func:`seal_bytes` (raises :class:`SealError`)."""
    return b"".join(_open_stream(io.BytesIO(blob), private_key, name))


def open_sealed(path: Path, private_key: X25519PrivateKey) -> Iterator[bytes]:
    """Yield the plaintext chunks of a sealed blob, raising :class:`SealError` on tampering.

    A chunk is only yielded once it authenticated; callers must still treat the stream
    as incomplete until the generator finishes without error.
    """
    with path.open("rb") as fh:
        yield from _open_stream(fh, private_key, path.name)


class HashingReader:
    """A reader that hashes every byte read through it (``digest``)."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh, self.digest = fh, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n)
        self.digest.update(data)
        return data


def open_hashed(path: Path, private_key: X25519PrivateKey) -> tuple[bytes, str]:
    """The whole plaintext sealed in ``path`` and the SHA-256 of the file's bytes, from one
    read (raises :class:`SealError`): what the enclave opened is what that digest names."""
    with path.open("rb") as fh:
        reader = HashingReader(fh)
        plaintext = b"".join(_open_stream(reader, private_key, path.name))  # type: ignore[arg-type]
        reader.read()  # nothing follows a last chunk that authenticated; hashed if it did
    return plaintext, reader.digest.hexdigest()


def opened_size(sealed_size: int, chunk: int) -> int:
    """How many plaintext bytes a well-formed sealed blob of ``sealed_size`` bytes in
    ``chunk``-byte chunks holds (every chunk is full but the last, which may be empty
    only when the whole plaintext is)."""
    body = sealed_size - _HEADER
    chunks = max(1, -(-body // (chunk + _TAG)))
    return body - chunks * _TAG


def sealed_size(plain_size: int, chunk: int = DEFAULT_CHUNK) -> int:
    """How many bytes sealing ``plain_size`` bytes in ``chunk``-byte chunks makes (the
    inverse of :func:`opened_size`): known before sealing, so an upload can declare its
    length and start while it is still being sealed."""
    chunks = max(1, -(-plain_size // chunk))
    return _HEADER + plain_size + chunks * _TAG


def open_stream(fh: BinaryIO, private_key: X25519PrivateKey, name: str) -> Iterator[bytes]:
    """:func:`open_sealed` over any reader (e.g. one that waits for a file still being
    written): each chunk is yielded once it authenticated."""
    return _open_stream(fh, private_key, name)


def _open_stream(fh: BinaryIO, private_key: X25519PrivateKey, name: str) -> Iterator[bytes]:
    header = fh.read(_HEADER)
    if len(header) != _HEADER or not header.startswith(MAGIC):
        raise SealError(f"{name}: not a sealed pprl blob")
    eph_raw = header[len(MAGIC) : len(MAGIC) + 32]
    salt = header[len(MAGIC) + 32 : len(MAGIC) + 48]
    (chunk,) = struct.unpack(">I", header[-4:])
    if not 0 < chunk <= _MAX_CHUNK:
        raise SealError(f"{name}: corrupt header")
    ephemeral = X25519PublicKey.from_public_bytes(eph_raw)
    aead = _file_key(private_key.exchange(ephemeral), salt, eph_raw, _raw(private_key.public_key()))
    index = 0
    current = fh.read(chunk + _TAG)
    while True:
        following = fh.read(chunk + _TAG) if len(current) == chunk + _TAG else b""
        last = not following
        try:
            plain = aead.decrypt(_nonce(index, last), current, header)
        except InvalidTag:
            raise SealError(
                f"{name}: chunk {index} failed authentication "
                "(tampered, truncated, reordered, or sealed to another key)"
            ) from None
        yield plain
        if last:
            return
        current = following
        index += 1
