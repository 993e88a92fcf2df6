"""Where the audit key pair lives: the private key only where the signer runs, the
public key (a separate file) wherever checkpoints are verified, the API included."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from service.crypto import KeyFileError, load_signing_key
from service.settings import Settings

__all__ = ["audit_public_key_path", "load_audit_public_key", "write_audit_public_key"]


def audit_public_key_path(settings: Settings) -> Path:
    """``PPRL_AUDIT_PUBLIC_KEY``, else beside the signing key (``*.pub.pem``)."""
    configured = getattr(settings, "audit_public_key", None)
    if isinstance(configured, Path):
        return configured
    private = settings.audit_signing_key_path
    return private.parent / (private.name.removesuffix(".pem").removesuffix(".key") + ".pub.pem")


def write_audit_public_key(settings: Settings) -> Ed25519PublicKey:
    """Derive the public key from the signing key and write it (0644) if absent.

    Run where the signing key is (``pprl admin init``, the worker's signer).
    """
    public = load_signing_key(settings.audit_signing_key_path).public_key()
    path = audit_public_key_path(settings)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.partial")
        tmp.write_bytes(
            public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        tmp.chmod(0o644)
        tmp.replace(path)
    return public


def load_audit_public_key(settings: Settings) -> Ed25519PublicKey:
    """The audit public key from its own file: the API never loads the signing key."""
    path = audit_public_key_path(settings)
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except FileNotFoundError:
        raise KeyFileError(
            f"{path}: audit public key not found (run `pprl admin init`, or start the worker "
            "once, where the signing key is)"
        ) from None
    except ValueError:
        raise KeyFileError(f"{path}: not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{path}: not an Ed25519 public key")
    return key
