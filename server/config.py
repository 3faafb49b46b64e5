"""The server's one settings object, read from `TINYSPHERE_*` environment variables.

Unset connection settings mean "embedded": `tinysphere serve` then starts what is missing itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Refused as secrets outside development: empty values and well-known defaults (MinIO's, PostgreSQL's among them).
PLACEHOLDER_SECRETS = frozenset({"", "changethis", "changeme", "secret", "password", "minioadmin", "postgres"})


class Settings(BaseSettings):
    """Every knob of the API, the worker and the CLI; units are in the names."""

    model_config = SettingsConfigDict(env_prefix="TINYSPHERE_", extra="ignore", frozen=True)

    environment: Literal["development", "production"] = "production"
    data_dir: Path = Path("tinysphere-data")  # embedded PostgreSQL, objects and MLflow store live here

    database_url: str | None = None  # postgresql://...; None = embedded PostgreSQL under data_dir
    db_pool_size: int = Field(default=10, ge=1)
    db_connect_timeout_s: int = Field(default=5, ge=1)
    db_statement_timeout_ms: int = Field(default=30_000, ge=0)

    s3_endpoint: str | None = None  # http(s)://host:port; None = local-directory object store
    s3_access_key: str = ""
    s3_secret_key: SecretStr = SecretStr("")
    s3_region: str = "us-east-1"
    s3_timeout_s: float = Field(default=10.0, gt=0)
    s3_public_endpoint: str | None = None  # host named in presigned URLs, if clients see another one
    bucket_prefix: str = ""  # prepended to every bucket name (one S3 account, several stacks)
    presign_expiry_s: int = Field(default=300, ge=10, le=7 * 24 * 3600)

    mlflow_tracking_uri: str | None = None  # None = MLflow tables in a second embedded database
    mlflow_timeout_s: int = Field(default=10, ge=1)
    mlflow_max_retries: int = Field(default=2, ge=0)

    max_request_bytes: int = Field(default=2**20, ge=1024)  # any body but a package upload
    max_package_bytes: int = Field(default=64 * 2**20, ge=1024)  # compressed upload
    max_unpacked_bytes: int = Field(default=256 * 2**20, ge=1024)  # sum of member sizes
    max_package_members: int = Field(default=5000, ge=2)

    job_max_attempts: int = Field(default=8, ge=1)
    job_backoff_base_s: float = Field(default=2.0, ge=0)
    job_backoff_max_s: float = Field(default=300.0, ge=0)
    job_lease_s: int = Field(default=600, ge=1)  # a running job older than this was abandoned
    worker_poll_s: float = Field(default=1.0, gt=0)

    # Online TUF keys (PEM, PKCS#8, ed25519): a value, else a file, else <data_dir>/tuf/<role>.key.
    tuf_snapshot_key: SecretStr | None = None
    tuf_snapshot_key_file: Path | None = None
    tuf_timestamp_key: SecretStr | None = None
    tuf_timestamp_key_file: Path | None = None
    tuf_snapshot_expiry_s: int = Field(default=7 * 24 * 3600, ge=60)
    tuf_timestamp_expiry_s: int = Field(default=24 * 3600, ge=10)  # re-signed once half of it is left
    max_bundle_bytes: int = Field(default=512 * 2**20, ge=1024)
    rollout_tick_s: float = Field(default=5.0, gt=0)  # how often a worker runs the rollout controller

    expose_docs: bool = False  # /openapi.json, /docs and /redoc without a token (a development aid);
    # viewers always get the schema at /api/v1/openapi.json
    offline_after_s: int = Field(default=900, ge=1)  # fleet summary: no heartbeat for this long
    retry_after_s: int = Field(default=5, ge=1)  # Retry-After on 503 answers

    # Failed credential attempts (dashboard sign-in, enrollment, bearer tokens), counted in PostgreSQL for every
    # replica: a key that reaches its limit within a window is refused (429), right credential or wrong, until
    # that window ends. Keys: the client address (per kind of credential; IPv6 by /64) and the credential's prefix.
    auth_failure_window_s: int = Field(default=300, ge=1)
    auth_failures_per_address: int = Field(default=30, ge=1)
    auth_failures_per_credential: int = Field(default=10, ge=1)

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        if self.environment == "development":
            return self
        if self.s3_endpoint is not None:
            if self.s3_access_key in PLACEHOLDER_SECRETS:
                raise ValueError("TINYSPHERE_S3_ACCESS_KEY is empty or a placeholder")
            if self.s3_secret_key.get_secret_value() in PLACEHOLDER_SECRETS:
                raise ValueError("TINYSPHERE_S3_SECRET_KEY is empty or a placeholder")
        if self.database_url is not None:
            password = urlsplit(self.database_url).password  # none at all is fine: socket/trust/cert auth
            if password and password in PLACEHOLDER_SECRETS:
                raise ValueError("the password in TINYSPHERE_DATABASE_URL is a placeholder")
        return self

    @property
    def embedded(self) -> bool:
        """True when some engine has to be started by the server itself."""
        return self.database_url is None

    @property
    def production(self) -> bool:
        """A deployment: the production environment on an external database (placeholder secrets and
        development TUF keys are refused); the zero-configuration server is not one."""
        return self.environment == "production" and not self.embedded
