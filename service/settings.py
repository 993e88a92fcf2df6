"""Every setting of the service and of the client commands, read from ``PPRL_*``.

The service reads ``Settings``; the client commands (`pprl submit`, `pprl run`...) read
``ClientSettings``. Both are pydantic-settings models, so every field can be set in the
environment (``PPRL_DATA_DIR=/srv/pprl``) or a ``.env`` file.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ClientSettings", "Settings"]


class Settings(BaseSettings):
    """The API server's and the enclave worker's settings."""

    model_config = SettingsConfigDict(env_prefix="PPRL_", env_file=".env", extra="ignore")

    environment: Literal["development", "production"] = Field(
        "development", description="production refuses unsafe defaults"
    )
    data_dir: Path = Field(Path(".pprl-data"), description="database, sealed blobs, keys")
    database_url: SecretStr | None = Field(
        None, description="SQLAlchemy URL; default: SQLite file in the data dir"
    )
    enclave_public_key: Path | None = Field(
        None, description="X25519 public key (PEM) the API seals to; default data_dir/keys"
    )
    enclave_private_key: Path | None = Field(
        None, description="X25519 private key (PEM, mode 0600); only the worker reads it"
    )
    audit_signing_key: Path | None = Field(
        None, description="Ed25519 key (PEM, mode 0600) that signs audit checkpoints"
    )
    max_upload_bytes: int = Field(4 << 30, description="larger uploads get 413")
    upload_chunk_bytes: int = Field(1 << 20, description="sealing chunk size")
    worker_embedded: bool = Field(True, description="run an enclave worker inside `pprl serve`")
    worker_poll_seconds: float = Field(1.0, description="how often an idle worker polls")
    run_lease_seconds: int = Field(
        300, description="a run whose worker stops renewing is re-queued"
    )
    linkage_backend: Literal["duckdb", "spark"] = Field("duckdb", description="Splink backend")
    spark_master: str = Field("local[2]", description="Spark master URL when backend is spark")
    linkage_memory_limit: str = Field(
        "6GB", description="DuckDB memory limit; beyond it the run spills to its private dir"
    )
    checkpoint_every: int = Field(100, description="sign an audit checkpoint every N events")
    purge_interval_seconds: int = Field(3600, description="retention purge schedule (worker)")
    session_secret: SecretStr = Field(
        SecretStr("development-only-session-secret"), description="signs DPO page sessions"
    )
    log_level: str = Field("INFO", description="log level of the structured JSON logs")

    @model_validator(mode="after")
    def _refuse_development_defaults_in_production(self) -> Settings:
        if self.environment == "production":
            if self.session_secret.get_secret_value().startswith("development"):
                raise ValueError("PPRL_SESSION_SECRET must be set in production")
            if self.database_url is None:
                raise ValueError("PPRL_DATABASE_URL must be set in production (PostgreSQL)")
        return self

    @cached_property
    def url(self) -> str:
        """The database URL (the SQLite default lives in the data dir)."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{(self.data_dir / 'pprl.db').resolve()}"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def enclave_public_key_path(self) -> Path:
        return self.enclave_public_key or self.keys_dir / "enclave.pub.pem"

    @property
    def enclave_private_key_path(self) -> Path:
        return self.enclave_private_key or self.keys_dir / "enclave.key.pem"

    @property
    def audit_signing_key_path(self) -> Path:
        return self.audit_signing_key or self.keys_dir / "audit-signing.key.pem"

    @property
    def blobs_dir(self) -> Path:
        return self.data_dir / "submissions"

    @property
    def incoming_dir(self) -> Path:
        return self.data_dir / "incoming"

    @property
    def work_dir(self) -> Path:
        return self.data_dir / "work"


class ClientSettings(BaseSettings):
    """What the client commands need to reach the service."""

    model_config = SettingsConfigDict(env_prefix="PPRL_", env_file=".env", extra="ignore")

    url: str = Field("https://127.0.0.1:8443", description="the service's base URL")
    token: SecretStr | None = Field(None, description="your bearer token")
    ca_bundle: Path | None = Field(None, description="CA certificate(s) to verify the server")
    retries: int = Field(3, description="retries on connection failures")

    @field_validator("ca_bundle", "token", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value
