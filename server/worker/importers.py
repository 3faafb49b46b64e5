"""Turns the records of a verified package into rows, objects and a batch for MLflow.

Idempotent per `(device_id, seq)`: the ledger insert skips records already imported, and only the
new ones fan out. Objects are written before the transaction commits, under names derived from the
record, so a retried import overwrites instead of duplicating. The MLflow batch (`ImportSummary.mlflow`)
holds only the new records; the caller hands it to the bridge once the transaction committed.

Blobs are kept only if their bytes are a JPEG or PNG (`server.images`); any other blob is dropped with
its reason in the package's `error`, and its record is imported without it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import Table, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from server import images
from server.db.models import Device, DriftEvent, Metric, Package, PackageStatus
from server.errors import ConflictError, InputError, PackageError
from server.package_format import DriftEventData, LogData, Manifest, MetricData, PackageRecord
from server.storage import ObjectStore
from server.tracking import feed as mlflow_feed
from server.tracking.bridge import RunBatch
from server.worker.unpack import UnpackedPackage

logger = logging.getLogger(__name__)
# The records as one JSON array: a short statement of fixed text, which psycopg parses once and prepares whatever
# the number of records (a multi-row VALUES would be a new, long statement for each count), and one parameter
# that the C JSON encoder writes.
_LEDGER_INSERT = text(
    """
    INSERT INTO records (device_id, seq, package_id, kind, ts, priority, data, object_key)
    SELECT u.device_id, u.seq, u.package_id, u.kind, u.ts, u.priority, u.data, u.object_key
    FROM jsonb_to_recordset(CAST(:rows AS jsonb))
         AS u(device_id text, seq bigint, package_id text, kind text, ts timestamptz, priority integer, data jsonb,
              object_key text)
    ON CONFLICT (device_id, seq) DO NOTHING
    RETURNING device_id, seq
    """
)
# The first of several packages whose seq range holds records of another package of the same device.
_OVERLAP = text(
    """
    SELECT u.first, u.last, o.package_id AS other
    FROM jsonb_to_recordset(CAST(:ranges AS jsonb))
         AS u(n integer, device_id text, package_id text, first bigint, last bigint)
    CROSS JOIN LATERAL (
        SELECT r.package_id FROM records r
        WHERE r.device_id = u.device_id AND r.seq BETWEEN u.first AND u.last AND r.package_id <> u.package_id
        LIMIT 1
    ) AS o
    ORDER BY u.n
    LIMIT 1
    """
)
_UPLOAD_THREADS = 8  # concurrent object writes per package
_REASONS_SHOWN = 10  # rejected blobs named in the package's error; the rest are counted


class ObjectWrites:
    """Object writes running on a pool while the import goes on; its transaction commits only after `wait`.

    The names are derived from the records, so a write repeated after a rollback overwrites the same object."""

    def __init__(self, pool: Executor) -> None:
        self._pool = pool
        self._futures: list[Future[None]] = []

    def submit(self, write: Callable[..., None], *args: Any) -> None:
        self._futures.append(self._pool.submit(write, *args))

    def wait(self, *, raise_failure: bool = True) -> None:
        """Wait for every write started; then raise the first failure, if any and if asked."""
        futures, self._futures = self._futures, []
        for future in futures:  # all of them finish: none is left writing once this returns or raises
            future.exception()
        for future in futures if raise_failure else ():
            future.result()


@dataclass
class ImportSummary:
    """What one import did; `new` counts records not seen before."""

    total: int
    new: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    rejected_blobs: list[str] = field(default_factory=list)  # why each dropped blob was refused
    mlflow: list[RunBatch] = field(default_factory=list)  # for MLflow, after the commit


@dataclass(frozen=True)
class _Typed:
    record: PackageRecord
    data: DriftEventData | MetricData | LogData | None


def import_package(
    session: Session, store: ObjectStore, package: Package, unpacked: UnpackedPackage, *, with_mlflow: bool = True,
    writes: ObjectWrites | None = None,
) -> ImportSummary:
    """Import every record of `unpacked` in the caller's transaction; raises `PackageError`/`ConflictError`.

    With `with_mlflow`, the summary carries the new records' MLflow batches. Objects are written before this
    returns, or, given `writes`, started there: the caller then calls `writes.wait()` before it commits."""
    return import_packages(session, store, [(package, unpacked)], with_mlflow=with_mlflow, writes=writes)[0]


def import_packages(
    session: Session, store: ObjectStore, items: list[tuple[Package, UnpackedPackage]], *, with_mlflow: bool = True,
    writes: ObjectWrites | None = None,
) -> list[ImportSummary]:
    """Import several packages, of distinct devices, in the caller's transaction with one statement per table.

    Raises `PackageError`/`ConflictError` for the first package that cannot be imported (the caller rolls back:
    nothing of the others is kept either). Same results as importing them one by one, in fewer round trips."""
    devices = [package.device_id for package, _ in items]
    if len(set(devices)) != len(devices):
        raise ValueError("a batch of imports holds at most one package per device")
    typed = [[_validate(r) for r in unpacked.records] for _, unpacked in items]
    _check_overlaps(session, [package for package, _ in items], [unpacked.manifest for _, unpacked in items])
    checks = [_check_blobs(unpacked) for _, unpacked in items]
    new_seqs = _insert_ledger(session, [(package, t, checked) for (package, _), t, (checked, _) in
                                        zip(items, typed, checks, strict=True)])
    # The devices' rows in the session at once (the feed reads each of them), held here: the identity map is weak.
    device_rows = session.scalars(select(Device).where(Device.id.in_(devices))).all() if with_mlflow else []
    summaries: list[ImportSummary] = []
    events: list[dict[str, Any]] = []
    metrics: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for (package, unpacked), package_typed, (checked, rejected) in zip(items, typed, checks, strict=True):
        new = new_seqs.get(package.device_id, set())
        summary, feed = _fan_out(store, package, unpacked, package_typed, checked, new, with_mlflow, writes,
                                 events, metrics)
        summary.rejected_blobs = rejected
        if with_mlflow and feed:
            summary.mlflow = mlflow_feed.build(session, package.device_id, unpacked.manifest.created, feed)
        note = _rejection_note(rejected)
        if note is not None:
            logger.warning("package %s of device %s: %s", package.id, package.device_id, note)
        manifest = unpacked.manifest
        updates.append({"device_id": package.device_id, "id": package.id, "status": PackageStatus.imported.value,
                        "imported_at": datetime.now(UTC), "error": note, "seq_first": manifest.seq_first,
                        "seq_last": manifest.seq_last, "record_count": manifest.record_count})
        summaries.append(summary)
    _insert_many(session, DriftEvent, events, ["device_id", "seq"])
    _insert_many(session, Metric, metrics, None)
    session.execute(update(Package), updates)  # by primary key, one statement for all
    del device_rows
    return summaries


def _fan_out(store: ObjectStore, package: Package, unpacked: UnpackedPackage, typed: list[_Typed],
             checked: dict[int, images.ImageType], new_seqs: set[int], with_mlflow: bool,
             writes: ObjectWrites | None, events: list[dict[str, Any]], metrics: list[dict[str, Any]],
             ) -> tuple[ImportSummary, list[mlflow_feed.FeedItem]]:
    """One package's new records as drift event and metric rows (appended), objects and MLflow feed items."""
    summary = ImportSummary(total=len(typed), new=len(new_seqs))
    logs: list[dict[str, Any]] = []
    feed: list[mlflow_feed.FeedItem] = []
    uploads: list[tuple[str, PackageRecord, images.ImageType]] = []  # (bucket, record, checked image)
    # A record without points, sample or log only opens its version's run: one of them per version is enough.
    plain_versions: set[str | None] = set()
    for item in typed:
        kind = item.record.kind
        summary.by_kind[kind] = summary.by_kind.get(kind, 0) + 1
        if item.record.seq not in new_seqs:
            continue
        image = checked.get(item.record.seq)
        if kind == "drift_event":
            events.append(_drift_event_row(package, item, image))
            if image is not None:
                uploads.append(("drift-samples", item.record, image))
            sample = None
            if with_mlflow and image is not None and item.record.blob is not None:
                sample = (image.suffix, unpacked.blob_path(item.record.blob).read_bytes())
            feed.append(mlflow_feed.FeedItem(item.record, {}, sample=sample))
        elif kind == "metric":
            assert isinstance(item.data, MetricData)
            metrics.extend(_metric_rows(package.device_id, item.record, item.data))
            feed.append(mlflow_feed.FeedItem(item.record, item.data.points()))
        elif kind == "log":
            logs.append({"seq": item.record.seq, "ts": _iso(item.record.ts), **item.record.data})
            feed.append(mlflow_feed.FeedItem(item.record, {}, log=logs[-1]))
        else:
            version = mlflow_feed.reported_version(item.record.data)
            if version not in plain_versions:
                plain_versions.add(version)
                feed.append(mlflow_feed.FeedItem(item.record, {}))  # opens the run of a version seen first here
            if image is not None:
                uploads.append(("prediction-images", item.record, image))
    _store_blobs(store, package.device_id, unpacked, uploads, writes)
    if logs:
        body = "\n".join(json.dumps(line, sort_keys=True) for line in logs).encode() + b"\n"
        log_key = f"{package.device_id}/{package.id}.jsonl"
        if writes is None:
            store.put_bytes("data-logs", log_key, body, "application/x-ndjson")
        else:
            writes.submit(store.put_bytes, "data-logs", log_key, body, "application/x-ndjson")
    return summary, feed


def _check_blobs(unpacked: UnpackedPackage) -> tuple[dict[int, images.ImageType], list[str]]:
    """The checked image type of every record's blob by seq, and a reason for each blob refused."""
    checked: dict[int, images.ImageType] = {}
    rejected: list[str] = []
    for record in unpacked.records:
        if record.blob is None:
            continue
        try:
            checked[record.seq] = images.check(unpacked.blob_path(record.blob))
        except InputError as exc:
            rejected.append(f"seq {record.seq} ({record.blob}): {exc}")
    return checked, rejected


def _rejection_note(rejected: list[str]) -> str | None:
    """The package's error for blobs it lost (None if none): the first few reasons and a count."""
    if not rejected:
        return None
    shown = "; ".join(rejected[:_REASONS_SHOWN])
    more = f"; and {len(rejected) - _REASONS_SHOWN} more" if len(rejected) > _REASONS_SHOWN else ""
    return f"{len(rejected)} blob(s) dropped, their records imported without them: {shown}{more}"


def _validate(record: PackageRecord) -> _Typed:
    models: dict[str, type[DriftEventData] | type[MetricData] | type[LogData]] = {
        "drift_event": DriftEventData, "metric": MetricData, "log": LogData}
    model = models.get(record.kind)
    if model is None:
        return _Typed(record, None)
    try:
        return _Typed(record, model.model_validate(record.data))
    except ValidationError as exc:
        raise PackageError(f"record seq {record.seq} ({record.kind}): {exc.errors()[0]['msg']}") from exc


def _check_overlaps(session: Session, packages: list[Package], manifests: list[Manifest]) -> None:
    """`ConflictError` for the first package whose seq range holds records of another package of its device."""
    ranges = [{"n": n, "device_id": p.device_id, "package_id": p.id, "first": m.seq_first, "last": m.seq_last}
              for n, (p, m) in enumerate(zip(packages, manifests, strict=True))]
    row = session.execute(_OVERLAP, {"ranges": json.dumps(ranges)}).first()
    if row is not None:
        raise ConflictError(f"seq range {row.first}..{row.last} overlaps records of package {row.other}",
                            existing=row.other)


def _insert_ledger(session: Session, packages: list[tuple[Package, list[_Typed], dict[int, images.ImageType]]],
                   ) -> dict[str, set[int]]:
    """Insert the packages' records into the ledger in one statement; the seqs that were new, by device."""
    rows = [{"device_id": package.device_id, "package_id": package.id, "seq": t.record.seq, "kind": t.record.kind,
             "ts": _iso(t.record.ts), "priority": t.record.priority, "data": t.record.data,
             "object_key": _blob_key(package.device_id, t.record.seq, checked.get(t.record.seq))}
            for package, typed, checked in packages for t in typed]
    new: dict[str, set[int]] = {}
    if rows:
        body = json.dumps(rows, separators=(",", ":"), check_circular=False)
        for device_id, seq in session.execute(_LEDGER_INSERT, {"rows": body}):
            new.setdefault(device_id, set()).add(seq)
    return new


def _blob_key(device_id: str, seq: int, image: images.ImageType | None) -> str | None:
    """The object key of a record's checked image: its suffix comes from the bytes, not the device's name."""
    return None if image is None else f"{device_id}/{seq}{image.suffix}"


def _store_blobs(store: ObjectStore, device_id: str, unpacked: UnpackedPackage,
                 uploads: list[tuple[str, PackageRecord, images.ImageType]], writes: ObjectWrites | None) -> None:
    """Write the checked blobs, a few at a time: each is a round trip to the object store."""

    def put(upload: tuple[str, PackageRecord, images.ImageType]) -> None:
        bucket, record, image = upload
        key = _blob_key(device_id, record.seq, image)
        assert key is not None and record.blob is not None
        path = unpacked.blob_path(record.blob)
        with path.open("rb") as source:
            store.put_file(bucket, key, source, path.stat().st_size, image.content_type)

    if writes is not None:
        for upload in uploads:
            writes.submit(put, upload)
        return
    if len(uploads) <= 1:
        for upload in uploads:
            put(upload)
        return
    with ThreadPoolExecutor(max_workers=min(_UPLOAD_THREADS, len(uploads))) as pool:
        for _ in pool.map(put, uploads):  # re-raises the first failure
            pass


def _drift_event_row(package: Package, item: _Typed, image: images.ImageType | None) -> dict[str, Any]:
    data = item.data
    assert isinstance(data, DriftEventData)
    return {"device_id": package.device_id, "seq": item.record.seq, "package_id": package.id, "ts": item.record.ts,
            "sample_key": _blob_key(package.device_id, item.record.seq, image),
            "frame_seq": _frame_seq(item.record.data), **data.model_dump()}


def _insert_many(session: Session, table: type[DriftEvent] | type[Metric], rows: list[dict[str, Any]],
                 conflict: list[str] | None) -> None:
    """Insert `rows`, skipping those that exist (on `conflict`, else on any constraint).

    One compiled statement with the rows as parameters: SQLAlchemy's "insertmanyvalues" sends them as multi-row
    VALUES pages; a statement built with the rows inlined would be compiled anew for every package."""
    if not rows:
        return
    statement = insert(cast(Table, table.__table__))  # Core, not the ORM's bulk path
    session.execute(statement.on_conflict_do_nothing(index_elements=conflict) if conflict
                    else statement.on_conflict_do_nothing(), rows)


def _frame_seq(data: dict[str, Any]) -> int | None:
    """The record's `frame_seq` if it is an integer a BIGINT holds, else None (older devices omit it)."""
    value = data.get("frame_seq")
    if isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63:
        return value
    return None


def _metric_rows(device_id: str, record: PackageRecord, data: MetricData) -> list[dict[str, Any]]:
    return [{"device_id": device_id, "seq": record.seq, "name": name, "value": value, "ts": record.ts}
            for name, value in data.points().items()]


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts else None
