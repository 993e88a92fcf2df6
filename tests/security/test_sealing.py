"""Sealed storage: flipped, truncated, swapped or extended blobs are detected; a blob
opened with another key fails; key files readable by others are refused at start."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from service.crypto import (
    KeyFileError,
    SealError,
    load_enclave_private_key,
    load_signing_key,
    open_sealed,
    seal_file,
)
from service.crypto.keys import generate_enclave_keys, generate_signing_key
from service.crypto.sealing import _HEADER, _TAG

CHUNK = 1024


@pytest.fixture
def sealed(tmp_path: Path) -> tuple[Path, bytes, X25519PrivateKey]:
    key = X25519PrivateKey.generate()
    data = os.urandom(CHUNK * 4 + 100)
    plain, blob = tmp_path / "plain", tmp_path / "blob.sealed"
    plain.write_bytes(data)
    seal_file(plain, blob, key.public_key(), chunk=CHUNK)
    return blob, data, key


def _open(blob: Path, key: X25519PrivateKey) -> bytes:
    return b"".join(open_sealed(blob, key))


def test_round_trip(sealed: tuple[Path, bytes, X25519PrivateKey]) -> None:
    blob, data, key = sealed
    assert _open(blob, key) == data


@pytest.mark.parametrize("where", ["header", "first chunk", "middle chunk", "tag of last chunk"])
def test_flipped_bit_is_detected(sealed: tuple[Path, bytes, X25519PrivateKey], where: str) -> None:
    blob, _data, key = sealed
    raw = bytearray(blob.read_bytes())
    offset = {
        "header": 20,
        "first chunk": _HEADER + 5,
        "middle chunk": _HEADER + 2 * (CHUNK + _TAG) + 7,
        "tag of last chunk": len(raw) - 3,
    }[where]
    raw[offset] ^= 0x40
    blob.write_bytes(bytes(raw))
    with pytest.raises(SealError):
        _open(blob, key)


@pytest.mark.parametrize("cut", ["inside a chunk", "at a chunk boundary", "header only"])
def test_truncation_is_detected(sealed: tuple[Path, bytes, X25519PrivateKey], cut: str) -> None:
    blob, _data, key = sealed
    raw = blob.read_bytes()
    length = {
        "inside a chunk": len(raw) - 50,
        "at a chunk boundary": _HEADER + 2 * (CHUNK + _TAG),
        "header only": _HEADER,
    }[cut]
    blob.write_bytes(raw[:length])
    with pytest.raises(SealError):
        _open(blob, key)


def test_swapped_chunks_and_appended_bytes_are_detected(
    sealed: tuple[Path, bytes, X25519PrivateKey],
) -> None:
    blob, _data, key = sealed
    raw = blob.read_bytes()
    size = CHUNK + _TAG
    first, second = raw[_HEADER : _HEADER + size], raw[_HEADER + size : _HEADER + 2 * size]
    blob.write_bytes(raw[:_HEADER] + second + first + raw[_HEADER + 2 * size :])
    with pytest.raises(SealError):
        _open(blob, key)
    blob.write_bytes(raw + os.urandom(CHUNK + _TAG))
    with pytest.raises(SealError):
        _open(blob, key)


def test_another_key_cannot_open(sealed: tuple[Path, bytes, X25519PrivateKey]) -> None:
    blob, _data, _key = sealed
    with pytest.raises(SealError):
        _open(blob, X25519PrivateKey.generate())


def test_loose_key_files_are_refused(tmp_path: Path) -> None:
    private, public, signing = (
        tmp_path / "enclave.key",
        tmp_path / "enclave.pub",
        tmp_path / "signing.key",
    )
    generate_enclave_keys(private, public)
    generate_signing_key(signing)
    assert load_enclave_private_key(private) and load_signing_key(signing)
    for path, loader in ((private, load_enclave_private_key), (signing, load_signing_key)):
        path.chmod(0o640)
        with pytest.raises(KeyFileError, match="readable by other users"):
            loader(path)  # type: ignore[operator]
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        generate_signing_key(signing)


def test_worker_refuses_to_start_with_a_loose_enclave_key(service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    service.settings.enclave_private_key_path.chmod(0o644)
    env = {
        **os.environ,
        "PPRL_DATA_DIR": str(service.settings.data_dir),
        "PPRL_DATABASE_URL": service.settings.url,
    }
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "worker", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "readable by other users" in result.stderr
