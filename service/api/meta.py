"""Health and the enclave public key (no authentication: neither is sensitive)."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import text

from service.api.deps import Slot, State
from service.crypto import public_key_hex
from service.crypto.envelope import format_fingerprint, key_fingerprint

router = APIRouter(tags=["meta"])


class Health(BaseModel):
    status: str
    database: str


class EnclaveKey(BaseModel):
    algorithm: str
    public_key_hex: str
    public_key_pem: str
    fingerprint: str = Field(
        description="sha256 of the raw public key, hex in groups of four: what partners pin"
    )


@router.get("/healthz", response_model=Health)
def healthz(state: State, _slot: Slot) -> Health:
    """Liveness and database reachability."""
    with state.db.snapshot() as session:
        session.execute(text("SELECT 1"))
    return Health(status="ok", database="sqlite" if state.db.is_sqlite else "postgresql")


@router.get("/v1/enclave/public-key", response_model=EnclaveKey)
def enclave_public_key(state: State) -> EnclaveKey:
    """The X25519 key that submissions are sealed to (compare it with the operator's)."""
    key = state.enclave_public_key
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return EnclaveKey(
        algorithm="X25519 + HKDF-SHA256 + AES-256-GCM (chunked)",
        public_key_hex=public_key_hex(key),
        public_key_pem=pem.decode(),
        fingerprint=format_fingerprint(key_fingerprint(key)),
    )
