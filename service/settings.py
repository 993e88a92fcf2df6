"""Every setting of the service and of the client commands, read from ``PPRL_*``.

The service reads ``Settings``; the client commands (`pprl submit`, `pprl run`...) read
``ClientSettings``. Both are pydantic-settings models, so every field can be set in the
environment (``PPRL_DATA_DIR=/srv/pprl``) or a ``.env`` file.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["ClientSettings", "Settings"]


class Settings(BaseSettings):
    """The API server's and the enclave worker's settings."""

    model_config = SettingsConfigDict(env_prefix="PPRL_", env_file=".env", extra="ignore")

    environment: Literal["development", "production"] = Field(
        "development", description="production refuses unsafe defaults"
    )
    data_dir: Path = Field(Path(".pprl-data"), description="database, sealed blobs, keys")
    boundaries: Path | None = Field(
        None, description="GeoJSON of area boundaries (feature property 'area' or 'name') for maps"
    )
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
    validation_memory_mb: int = Field(
        1024,
        ge=256,
        description="address-space limit of the enclave's validator child, on top of the "
        "opened payload's size",
    )
    validation_timeout_seconds: float = Field(
        300.0, gt=0, description="wall-clock (and CPU) limit of the enclave's validator child"
    )
    stream_validation: bool = Field(
        True,
        description="the enclave worker validates an upload while it arrives (each row "
        "group as its bytes land), so the verdict is ready when the upload ends; off: "
        "only once the submission is received",
    )
    max_identity_share: float = Field(
        0.01,
        gt=0,
        le=1,
        description="most rows one full-identity token (NHS number, names + birth date) may fill",
    )
    max_identity_repeats_floor: int = Field(
        50, ge=1, description="a full-identity token may always repeat this often"
    )
    worker_embedded: bool = Field(True, description="run an enclave worker inside `pprl serve`")
    worker_poll_seconds: float = Field(1.0, description="how often an idle worker polls")
    run_time_quantum_seconds: float | None = Field(
        None,
        ge=0,
        description="a run's outcome (release or failure) is stored only at a multiple of "
        "this many seconds after it started, so how long it took says little about the "
        "data; default 15 in production, 0 in development",
    )
    run_lease_seconds: int = Field(
        300, description="a run whose worker stops renewing is re-queued"
    )
    linkage_backend: Literal["duckdb", "spark"] = Field("duckdb", description="Splink backend")
    spark_master: str = Field("local[2]", description="Spark master URL when backend is spark")
    linkage_memory_limit: str = Field(
        "6GB", description="DuckDB memory limit; beyond it the run spills to its private dir"
    )
    linkage_spill_limit: str | None = Field(
        None,
        description="DuckDB spill cap (max_temp_directory_size), e.g. 40GB; size it to the disk",
    )
    linkage_threads: int | None = Field(None, description="DuckDB threads (default: all cores)")
    spark_conf: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        repr=False,  # may hold spark.authenticate.secret
        description="extra Spark configuration: JSON object or k=v list (comma or newline)",
    )
    spark_scratch_dir: Path | None = Field(
        None,
        description="Spark inputs and checkpoints; shared encrypted storage on a real cluster "
        "(default: data_dir/work/spark)",
    )
    spark_driver_host: str | None = Field(None, description="address executors reach the driver at")
    spark_bind_address: str | None = Field(None, description="address the driver listens on")
    checkpoint_every: int = Field(100, description="sign an audit checkpoint every N events")
    audit_public_key: Path | None = Field(
        None, description="Ed25519 audit public key (PEM); default beside the signing key"
    )
    checkpoint_wait_seconds: float = Field(
        10.0, description="how long an export or `audit checkpoint` waits for the signer"
    )
    auth_failures_per_minute: int = Field(
        30, description="failed authentications a client may make a minute before 429"
    )
    denial_window_seconds: int = Field(
        60, description="repeated anonymous denials from one client: one audit event per window"
    )
    dpo_session_hours: float = Field(8.0, description="DPO page sessions end after this")
    run_time_limit_seconds: int = Field(
        3600, description="a run computing longer than this fails cleanly (wall clock)"
    )
    partner_quota_bytes: int = Field(
        16 << 30, description="sealed bytes a partner may hold per project, superseded included"
    )
    superseded_grace_hours: float = Field(
        24.0, description="superseded submissions' blobs are purged after this grace period"
    )
    max_connections: int = Field(
        200, description="`pprl serve`: concurrent connections beyond this get 503"
    )
    api_processes: int = Field(
        1,
        ge=1,
        le=64,
        description="`pprl serve`: API processes sharing the port (one per core: Python "
        "runs one request at a time per process); the enclave worker stays one",
    )
    header_timeout_seconds: float = Field(
        10.0, description="`pprl serve`: idle keep-alive and header-read timeout"
    )
    trusted_proxies: str = Field(
        "",
        description="`pprl serve`: addresses of reverse proxies whose X-Forwarded-For names "
        "the client (comma-separated, or *); empty: the connection's own address, always",
    )
    app_role_password: SecretStr | None = Field(
        None, description="`pprl admin init --app-role`: password set on the application role"
    )
    purge_interval_seconds: int = Field(3600, description="retention purge schedule (worker)")
    session_secret: SecretStr = Field(
        SecretStr("development-only-session-secret"), description="signs DPO page sessions"
    )
    log_level: str = Field("INFO", description="log level of the structured JSON logs")

    @field_validator("spark_conf", mode="before")
    @classmethod
    def _parse_spark_conf(cls, value: object) -> object:
        from service.worker.spark import parse_spark_conf

        return parse_spark_conf(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _refuse_development_defaults_in_production(self) -> Settings:
        if self.environment == "production":
            if self.session_secret.get_secret_value().startswith("development"):
                raise ValueError("PPRL_SESSION_SECRET must be set in production")
            if self.database_url is None:
                raise ValueError("PPRL_DATABASE_URL must be set in production (PostgreSQL)")
            if self.linkage_backend == "spark":
                from service.worker.spark import refuse_insecure_cluster

                refuse_insecure_cluster(self.spark_master, self.spark_conf)
        return self

    @cached_property
    def url(self) -> str:
        """The database URL (the SQLite default lives in the data dir)."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{(self.data_dir / 'pprl.db').resolve()}"

    @property
    def run_time_quantum(self) -> float:
        """Seconds to which a run's duration is rounded up (see the field)."""
        if self.run_time_quantum_seconds is not None:
            return self.run_time_quantum_seconds
        return 15.0 if self.environment == "production" else 0.0

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

    @property
    def spark_scratch(self) -> Path:
        """Where Spark runs put their inputs and checkpoints (one directory per run)."""
        return self.spark_scratch_dir or self.work_dir / "spark"


class ClientSettings(BaseSettings):
    """What the client commands need to reach the service."""

    model_config = SettingsConfigDict(env_prefix="PPRL_", env_file=".env", extra="ignore")

    url: str = Field("https://127.0.0.1:8443", description="the service's base URL")
    token: SecretStr | None = Field(None, description="your bearer token")
    ca_bundle: Path | None = Field(None, description="CA certificate(s) to verify the server")
    retries: int = Field(3, description="retries on connection failures")
    config_dir: Path | None = Field(
        None,
        description="where `pprl submit` keeps pinned enclave keys and agreed policies "
        "(default $XDG_CONFIG_HOME/pprl, else ~/.config/pprl)",
    )

    @field_validator("ca_bundle", "token", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value
