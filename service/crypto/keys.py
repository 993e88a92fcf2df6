"""Key files: the enclave's X25519 pair and the audit log's Ed25519 signing key.

Private keys are PEM files of mode 0600; loading one that group or others can read is
refused, as is overwriting an existing key.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

__all__ = [
    "KeyFileError",
    "generate_enclave_keys",
    "generate_signing_key",
    "load_enclave_private_key",
    "load_enclave_public_key",
    "load_signing_key",
    "public_key_hex",
]


class KeyFileError(Exception):
    """A key file is missing, unreadable, of the wrong kind or too widely readable."""


def _write_new(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise KeyFileError(f"{path}: already exists; refusing to overwrite a key") from None
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_private(path: Path) -> bytes:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: key file not found (run `pprl admin init`)") from None
    if info.st_mode & 0o077:
        raise KeyFileError(
            f"{path}: private key is readable by other users (mode "
            f"{stat.S_IMODE(info.st_mode):04o}); run `chmod 600 {path}`"
        )
    return path.read_bytes()


def generate_enclave_keys(private_path: Path, public_path: Path) -> X25519PublicKey:
    """Make the enclave's X25519 key pair: private key 0600, public key 0644."""
    key = X25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key()
    public_pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write_new(private_path, private_pem, 0o600)
    _write_new(public_path, public_pem, 0o644)
    return public


def generate_signing_key(path: Path) -> Ed25519PublicKey:
    """Make the audit log's Ed25519 signing key (0600)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_new(path, pem, 0o600)
    return key.public_key()


def load_enclave_private_key(path: Path) -> X25519PrivateKey:
    """The enclave private key (only the worker calls this)."""
    key = serialization.load_pem_private_key(_read_private(path), password=None)
    if not isinstance(key, X25519PrivateKey):
        raise KeyFileError(f"{path}: not an X25519 private key")
    return key


def load_enclave_public_key(path: Path) -> X25519PublicKey:
    """The enclave public key the API seals submissions to."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except FileNotFoundError:
        raise KeyFileError(
            f"{path}: enclave public key not found (run `pprl admin init`)"
        ) from None
    if not isinstance(key, X25519PublicKey):
        raise KeyFileError(f"{path}: not an X25519 public key")
    return key


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """The audit checkpoint signing key."""
    key = serialization.load_pem_private_key(_read_private(path), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 private key")
    return key


def public_key_hex(key: X25519PublicKey | Ed25519PublicKey) -> str:
    """Raw public key bytes as hex (how keys are shown and compared)."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()
