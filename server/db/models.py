"""The tables: identity (tokens, devices), sync (packages, jobs, records) and what records become."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TIMESTAMP
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

Timestamp = TIMESTAMP(timezone=True)


class Base(DeclarativeBase):
    """Declarative base shared by every table."""


class Role(enum.StrEnum):
    """Operator roles, each including the rights of the ones before it."""

    viewer = "viewer"
    operator = "operator"
    admin = "admin"


class DeviceStatus(enum.StrEnum):
    active = "active"
    decommissioned = "decommissioned"


class PackageStatus(enum.StrEnum):
    queued = "queued"  # stored, import job pending
    imported = "imported"
    rejected = "rejected"  # the package itself is bad; retrying cannot help
    parked = "parked"  # import failed too often; an operator can requeue it


class JobState(enum.StrEnum):
    queued = "queued"
    running = "running"
    done = "done"
    parked = "parked"


class ApiToken(Base):
    """An operator credential (hashed) with its role."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp)


class DashboardSession(Base):
    """A dashboard sign-in: the cookie holds a random secret, this row its SHA-256; sign-out revokes the row."""

    __tablename__ = "ui_sessions"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    expires_at: Mapped[datetime] = mapped_column(Timestamp, index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp)


class CredentialFailure(Base):
    """Failed credential attempts under one key (a client address, a credential's prefix) in its current window."""

    __tablename__ = "credential_failures"

    key: Mapped[str] = mapped_column(String(96), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(Timestamp, index=True)
    failures: Mapped[int] = mapped_column(Integer)
    blocked_until: Mapped[datetime | None] = mapped_column(Timestamp)  # set by the failure that reached the limit


class EnrollmentToken(Base):
    """A one-time credential a new device exchanges for its identity."""

    __tablename__ = "enrollment_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    tags: Mapped[list[str]] = mapped_column(ARRAY(String(64)), server_default="{}")
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(Timestamp)
    used_at: Mapped[datetime | None] = mapped_column(Timestamp)
    device_id: Mapped[str | None] = mapped_column(String(40))
    attempt_hash: Mapped[str | None] = mapped_column(String(64))  # sha256 of the key the device enrolled with


class Device(Base):
    """An enrolled device and the state its last heartbeat reported."""

    __tablename__ = "devices"
    __table_args__ = (Index("ix_devices_tags", "tags", postgresql_using="gin"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(128))
    location: Mapped[str | None] = mapped_column(String(256))
    tags: Mapped[list[str]] = mapped_column(ARRAY(String(64)), server_default="{}")
    status: Mapped[str] = mapped_column(String(16), server_default=DeviceStatus.active.value, index=True)
    secret_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    hardware: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    enrolled_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    decommissioned_at: Mapped[datetime | None] = mapped_column(Timestamp)
    last_seen: Mapped[datetime | None] = mapped_column(Timestamp, index=True)
    model_version: Mapped[str | None] = mapped_column(String(64), index=True)
    update_state: Mapped[str | None] = mapped_column(String(32))
    outbox_depth: Mapped[int | None] = mapped_column(Integer)
    evictions: Mapped[int | None] = mapped_column(BigInteger)
    health: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    desired_bundle_version: Mapped[str | None] = mapped_column(String(64))
    desired_model: Mapped[str | None] = mapped_column(String(128))  # set by rollouts; the target is looked up
    pending_labels: Mapped[int] = mapped_column(Integer, server_default="0")


class Package(Base):
    """An uploaded sync package; its bytes are in the `packages` bucket under `object_key`.

    It belongs to the device that uploaded it: the key is `(device_id, id)`, so no other device's
    upload can ever collide with it.
    """

    __tablename__ = "packages"
    __table_args__ = (PrimaryKeyConstraint("device_id", "id", name="packages_pkey"),)

    id: Mapped[str] = mapped_column(String(128))  # the device's package id
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    object_key: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(16), server_default=PackageStatus.queued.value)
    received_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    imported_at: Mapped[datetime | None] = mapped_column(Timestamp)
    seq_first: Mapped[int | None] = mapped_column(BigInteger)
    seq_last: Mapped[int | None] = mapped_column(BigInteger)
    record_count: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)


class Job(Base):
    """A queued unit of worker work (today: importing one package)."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_claim", "state", "run_after"),
        ForeignKeyConstraint(["device_id", "package_id"], ["packages.device_id", "packages.id"],
                             name="jobs_device_id_package_id_fkey"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    device_id: Mapped[str] = mapped_column(String(40))
    package_id: Mapped[str] = mapped_column(String(128), index=True)
    state: Mapped[str] = mapped_column(String(16), server_default=JobState.queued.value)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    run_after: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    locked_at: Mapped[datetime | None] = mapped_column(Timestamp)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)


class Record(Base):
    """The ledger of every imported record: `(device_id, seq)` is unique, so imports are idempotent."""

    __tablename__ = "records"
    __table_args__ = (
        Index("ix_records_device_kind_seq", "device_id", "kind", "seq"),
        ForeignKeyConstraint(["device_id", "package_id"], ["packages.device_id", "packages.id"],
                             name="records_device_id_package_id_fkey"),
    )

    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    package_id: Mapped[str] = mapped_column(String(128), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    ts: Mapped[datetime | None] = mapped_column(Timestamp)
    priority: Mapped[int] = mapped_column(Integer, server_default="0")
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    object_key: Mapped[str | None] = mapped_column(String(300))


class DriftEvent(Base):
    """A drift alarm a device reported, with its sample image in `drift-samples`."""

    __tablename__ = "drift_events"
    __table_args__ = (
        UniqueConstraint("device_id", "seq"),
        Index("ix_drift_events_device_ts", "device_id", "ts"),
        ForeignKeyConstraint(["device_id", "package_id"], ["packages.device_id", "packages.id"],
                             name="drift_events_device_id_package_id_fkey"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    seq: Mapped[int] = mapped_column(BigInteger)
    package_id: Mapped[str] = mapped_column(String(128))
    ts: Mapped[datetime | None] = mapped_column(Timestamp)
    received_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    frame_seq: Mapped[int | None] = mapped_column(BigInteger)  # the device's frame counter; `seq` is the outbox's
    detector: Mapped[str] = mapped_column(String(64), index=True)
    statistic: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    model_version: Mapped[str | None] = mapped_column(String(64))
    label: Mapped[str | None] = mapped_column(String(128))
    confidence: Mapped[float | None] = mapped_column(Float)
    vector: Mapped[list[float | None] | None] = mapped_column(ARRAY(Float))
    sample_key: Mapped[str | None] = mapped_column(String(300))


class DriftLabel(Base):
    """An operator's label for a drift sample; delivered with the device's next heartbeat."""

    __tablename__ = "drift_labels"
    __table_args__ = (
        Index("ix_drift_labels_pending", "device_id", postgresql_where=text("delivered_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    drift_event_id: Mapped[int] = mapped_column(ForeignKey("drift_events.id"), index=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    seq: Mapped[int] = mapped_column(BigInteger)
    label: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    delivered_at: Mapped[datetime | None] = mapped_column(Timestamp)


class Metric(Base):
    """One metric value of one record; the time series API reads these."""

    __tablename__ = "metrics"
    __table_args__ = (Index("ix_metrics_device_name_ts", "device_id", "name", "ts"),)

    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[float] = mapped_column(Float)
    ts: Mapped[datetime | None] = mapped_column(Timestamp)


class TufMetadata(Base):
    """Every signed version of every top-level TUF role, byte for byte as served."""

    __tablename__ = "tuf_metadata"

    role: Mapped[str] = mapped_column(String(16), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    expires: Mapped[datetime] = mapped_column(Timestamp)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())


class Bundle(Base):
    """A published model bundle: one TUF target, its bundle.json and where it came from."""

    __tablename__ = "bundles"
    __table_args__ = (UniqueConstraint("model", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(64), index=True)
    target_path: Mapped[str] = mapped_column(String(300), unique=True)
    sha256: Mapped[str] = mapped_column(String(64))
    length: Mapped[int] = mapped_column(BigInteger)
    object_key: Mapped[str] = mapped_column(String(400))
    custom: Mapped[dict[str, Any]] = mapped_column(JSONB)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSONB)  # the bundle's bundle.json
    targets_version: Mapped[int] = mapped_column(Integer)  # targets metadata version that added it
    published_by: Mapped[str] = mapped_column(String(128))
    published_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    lineage: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")  # e.g. the MLflow model version


class Rollout(Base):
    """A bundle going out to a selection of devices in waves, gated on their health."""

    __tablename__ = "rollouts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bundle_id: Mapped[int] = mapped_column(ForeignKey("bundles.id"), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)  # a RolloutState (server/rollouts/states.py)
    selector: Mapped[dict[str, Any]] = mapped_column(JSONB)
    waves: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    gates: Mapped[dict[str, Any]] = mapped_column(JSONB)
    wave_timeout_s: Mapped[int] = mapped_column(Integer)
    current_wave: Mapped[int] = mapped_column(Integer, server_default="0")
    wave_started_at: Mapped[datetime | None] = mapped_column(Timestamp)  # None: the wave is not assigned yet
    rolled_back: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())


class RolloutDevice(Base):
    """One device of a rollout: its wave, what it ran before, and what it did with the new bundle."""

    __tablename__ = "rollout_devices"
    __table_args__ = (
        Index("ix_rollout_devices_active", "device_id", unique=True, postgresql_where=text("active")),
    )

    rollout_id: Mapped[int] = mapped_column(ForeignKey("rollouts.id"), primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), primary_key=True)
    wave: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))  # a DeviceState (server/rollouts/states.py)
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))  # rollout not finished
    previous_version: Mapped[str | None] = mapped_column(String(64))
    previous_model: Mapped[str | None] = mapped_column(String(128))
    baseline_p95_ms: Mapped[float | None] = mapped_column(Float)
    assigned_at: Mapped[datetime | None] = mapped_column(Timestamp)
    switched_at: Mapped[datetime | None] = mapped_column(Timestamp)


class RolloutEvent(Base):
    """A decision of the rollout controller or an operator, with its reason and the figures behind it."""

    __tablename__ = "rollout_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    rollout_id: Mapped[int] = mapped_column(ForeignKey("rollouts.id"), index=True)
    at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    wave: Mapped[int | None] = mapped_column(Integer)
    decision: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")


class IdempotencyKey(Base):
    """A creating request sent with an `Idempotency-Key`, per operator token: what it asked and what it got.

    The key itself is not stored, only its SHA-256; the answer is encrypted with a key derived from it."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("token_id", "key_hash"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id"))
    key_hash: Mapped[str] = mapped_column(String(64))
    request_hash: Mapped[str] = mapped_column(String(64))  # method, path and body of the first request
    answer: Mapped[bytes | None] = mapped_column(LargeBinary)  # None only inside the creating transaction
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    expires_at: Mapped[datetime] = mapped_column(Timestamp, index=True)


class MlflowRun(Base):
    """A (device, model version) whose MLflow run exists; the worker opens the run of a version a heartbeat
    reported and this table does not hold yet (`server.tracking.reported`)."""

    __tablename__ = "mlflow_runs"

    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), primary_key=True)
    version: Mapped[str] = mapped_column(String(64), primary_key=True)  # as runs are keyed: `tracking.runs.safe_name`
    model: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str] = mapped_column(String(64))
    opened_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
