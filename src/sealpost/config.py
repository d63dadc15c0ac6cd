"""Settings, read once from the environment (``SEALPOST_*``) or a ``.env`` file.

One pydantic-settings class for the whole service: every process role reads the same names,
so a deployment is described by one environment.  ``.env.template`` lists them all.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Sealpost's configuration; defaults give the embedded, single-machine setup."""

    model_config = SettingsConfigDict(
        env_prefix="SEALPOST_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    data_dir: Path = Field(
        Path("data"), description="Database, keys and blobs of the embedded default."
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default: SQLite (WAL) at <data_dir>/sealpost.db."
    )
    sqlite_synchronous: Literal["FULL", "NORMAL"] = Field(
        "FULL", description="FULL survives power loss after a commit; NORMAL only a process crash."
    )

    api_host: str = "127.0.0.1"
    api_port: int = 8080

    log_level: str = "INFO"
    log_format: Literal["console", "json"] = "console"

    ledger_origin: str = Field(
        "localhost/sealpost",
        description="C2SP checkpoint origin: names this log; set it to your public host + path.",
    )
    batch_window_ms: int = Field(
        200, ge=1, le=1000, description="How long the sequencer gathers records before sealing."
    )
    batch_max_records: int = Field(
        50_000, ge=1, description="Largest batch sealed in one tree head."
    )
    sequencer_enabled: bool = Field(True, description="Whether this process may act as sequencer.")
    sequencer_lease_seconds: float = Field(
        10.0, gt=0, description="How long a sequencer holds the lease without renewing it."
    )

    keys_dir: Path | None = Field(None, description="Local keys; default <data_dir>/keys.")
    seal_certificate: Path | None = Field(None, description="Operator's seal certificate (PEM).")
    seal_key: Path | None = Field(None, description="Operator's seal private key (PEM).")
    seal_pkcs12: Path | None = Field(
        None, description="Operator's seal as PKCS#12, instead of PEM."
    )
    seal_key_password: SecretStr | None = None

    tsa_url: str | None = Field(
        None, description="External RFC 3161 TSA; default: the embedded TSA with local keys."
    )
    tsa_username: str | None = None
    tsa_password: SecretStr | None = None
    tsa_timeout_seconds: float = 10.0
    tsa_policy_oid: str = "1.3.6.1.4.1.61017.1.1"

    blob_dir: Path | None = Field(
        None, description="Content blobs by SHA-256; default <data_dir>/blobs."
    )

    @cached_property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'sealpost.db').resolve()}"

    @cached_property
    def resolved_keys_dir(self) -> Path:
        return self.keys_dir or self.data_dir / "keys"

    @cached_property
    def resolved_blob_dir(self) -> Path:
        return self.blob_dir or self.data_dir / "blobs"
