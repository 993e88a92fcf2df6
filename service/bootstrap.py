"""First-time set-up of a service instance: schema, keys, first admin token."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from service.audit import SYSTEM, record
from service.auth import create_principal
from service.crypto import generate_enclave_keys, generate_signing_key, public_key_hex
from service.db import Database, migrate
from service.db.models import Principal
from service.errors import Conflict
from service.settings import Settings

__all__ = ["Initialised", "initialise"]


@dataclass(frozen=True)
class Initialised:
    admin_name: str
    admin_token: str
    enclave_public_key: str
    audit_public_key: str
    database: str


def initialise(settings: Settings, admin_name: str = "admin") -> Initialised:
    """Migrate, make the enclave and audit keys (if absent), create the first admin.

    Refuses if principals already exist: the first admin token is printed only once.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    migrate(settings.url)
    db = Database(settings.url)
    try:
        with db.transaction() as session:
            if session.execute(select(func.count()).select_from(Principal)).scalar():
                raise Conflict("this service is already initialised (an admin token exists)")
        enclave = settings.enclave_private_key_path
        if not enclave.exists():
            generate_enclave_keys(enclave, settings.enclave_public_key_path)
        signing = settings.audit_signing_key_path
        if not signing.exists():
            generate_signing_key(signing)
        from service.audit.keys import write_audit_public_key

        write_audit_public_key(settings)  # the API reads this file, never the signing key
        from service.crypto import load_enclave_public_key, load_signing_key

        enclave_pub = public_key_hex(load_enclave_public_key(settings.enclave_public_key_path))
        audit_pub = public_key_hex(load_signing_key(signing).public_key())
        with db.transaction() as session:
            record(session, actor=SYSTEM, action="service.initialised",
                   details={"enclave_public_key": enclave_pub, "audit_public_key": audit_pub,
                            "database": "sqlite" if db.is_sqlite else "postgresql"})  # fmt: skip
            _, token = create_principal(session, name=admin_name, role="admin", by=SYSTEM)
        return Initialised(admin_name, token, enclave_pub, audit_pub,
                           "sqlite" if db.is_sqlite else "postgresql")  # fmt: skip
    finally:
        db.dispose()
