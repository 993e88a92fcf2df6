"""Crypto at rest: enclave and signing keys, and sealing submissions to the enclave."""

from service.crypto.keys import (
    KeyFileError,
    generate_enclave_keys,
    generate_signing_key,
    load_enclave_private_key,
    load_enclave_public_key,
    load_signing_key,
    public_key_hex,
)
from service.crypto.sealing import SealError, open_bytes, open_sealed, seal_bytes, seal_file

__all__ = [
    "KeyFileError",
    "SealError",
    "generate_enclave_keys",
    "generate_signing_key",
    "load_enclave_private_key",
    "load_enclave_public_key",
    "load_signing_key",
    "open_bytes",
    "open_sealed",
    "public_key_hex",
    "seal_bytes",
    "seal_file",
]
