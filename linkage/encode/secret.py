"""The project secret: 32 random bytes that partners share and the operator never holds."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from linkage.errors import SecretError

__all__ = ["SECRET_BYTES", "load_secret", "new_secret", "write_secret"]

SECRET_BYTES = 32


def new_secret() -> bytes:
    """32 bytes from the operating system's CSPRNG."""
    return secrets.token_bytes(SECRET_BYTES)


def write_secret(path: str | Path, key: bytes) -> None:
    """Write ``key`` to a new file readable only by its owner; never overwrite."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SecretError(f"{p}: already exists; refusing to overwrite a secret") from None
    except OSError as exc:
        raise SecretError(f"{p}: cannot create the secret file ({exc.strerror})") from None
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)


def load_secret(path: str | Path) -> bytes:
    """Read a secret file: exactly 32 bytes, not readable by group or others."""
    p = Path(path)
    try:
        info = p.stat()
    except FileNotFoundError:
        raise SecretError(f"{p}: secret file not found (make one with `pprl keygen`)") from None
    except OSError as exc:
        raise SecretError(f"{p}: cannot read the secret file ({exc.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise SecretError(f"{p}: the secret must be a regular file")
    if info.st_mode & 0o077:
        raise SecretError(
            f"{p}: the secret file is readable by other users (mode "
            f"{stat.S_IMODE(info.st_mode):04o}); run `chmod 600 {p}`"
        )
    key = p.read_bytes()
    if len(key) != SECRET_BYTES:
        raise SecretError(
            f"{p}: a secret is exactly {SECRET_BYTES} bytes, this file has {len(key)} "
            "(was it copied as text?)"
        )
    return key
