"""Packages are deterministic, complete, capped, and carry images downscaled."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile

import numpy as np
from PIL import Image

from contract.package import package_id, read_manifest
from device.outbox.records import ROW_OVERHEAD, Record
from device.sync.package import ImagePolicy, build, plan
from server.package_format import PACKAGE_ID_PATTERN  # the server's pattern: the ids must pass it


def _png(side: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (side, side, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


BLOBS = {"000000000002.png": _png(300)}


def _records() -> list[Record]:
    out = []
    for seq in (1, 2, 4):
        data = json.dumps({"n": seq, "label": "3"}, separators=(",", ":"))
        blob = "000000000002.png" if seq == 2 else None
        size = ROW_OVERHEAD + len(data) + (len(BLOBS[blob]) if blob else 0)
        kind = "drift_event" if blob else "prediction"
        out.append(Record(seq, kind, f"2026-01-01T00:00:0{seq}+00:00", 3 if blob else 0, data, blob, size))
    return out


def test_a_package_is_byte_identical_when_rebuilt() -> None:
    first = build("dev-1", _records(), BLOBS.__getitem__, ImagePolicy())
    again = build("dev-1", _records(), BLOBS.__getitem__, ImagePolicy())
    assert first.body == again.body and first.sha256 == again.sha256 == hashlib.sha256(first.body).hexdigest()
    assert first.package_id == package_id("dev-1", 1, 4) != package_id("dev-2", 1, 4)
    assert gzip.decompress(first.body)[:13] == b"manifest.json"
    assert first.body[4:8] == b"\0\0\0\0"  # gzip mtime


def test_manifest_lists_every_member_with_digest_size_and_kind() -> None:
    package = build("dev-1", _records(), BLOBS.__getitem__, ImagePolicy())
    manifest = read_manifest(package.body)
    assert {k: manifest[k] for k in ("format", "package_id", "device_id", "seq_first", "seq_last", "record_count")} == {
        "format": 1, "package_id": package.package_id, "device_id": "dev-1", "seq_first": 1, "seq_last": 4,
        "record_count": 3,
    }
    assert manifest["created"] == "2026-01-01T00:00:04+00:00"
    with tarfile.open(fileobj=io.BytesIO(package.body), mode="r:gz") as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["manifest.json", "records.jsonl", "blobs/000000000002.jpg"]
        assert {(m.mtime, m.uid, m.gid, m.uname) for m in members} == {(0, 0, 0, "")}
        contents = {m.name: tar.extractfile(m).read() for m in members[1:]}  # type: ignore[union-attr]
    for f in manifest["files"]:
        assert hashlib.sha256(contents[f["name"]]).hexdigest() == f["sha256"] and len(contents[f["name"]]) == f["size"]
    assert [f["kind"] for f in manifest["files"]] == ["records", "blob"]
    lines = [json.loads(line) for line in contents["records.jsonl"].decode().splitlines()]
    assert [(r["seq"], r["blob"]) for r in lines] == [(1, None), (2, "blobs/000000000002.jpg"), (4, None)]
    assert lines[0] == {"seq": 1, "kind": "prediction", "ts": "2026-01-01T00:00:01+00:00", "priority": 0,
                        "data": {"n": 1, "label": "3"}, "blob": None}


def test_images_are_downscaled_and_jpeg_encoded() -> None:
    package = build("dev-1", _records(), BLOBS.__getitem__, ImagePolicy(max_side=64, jpeg_quality=70))
    with tarfile.open(fileobj=io.BytesIO(package.body), mode="r:gz") as tar:
        image = Image.open(io.BytesIO(tar.extractfile("blobs/000000000002.jpg").read()))  # type: ignore[union-attr]
    assert image.format == "JPEG" and max(image.size) == 64


def test_plan_caps_the_estimated_size_and_files_but_takes_at_least_one() -> None:
    records = [Record(i, "prediction", "t", 0, "x" * 300, None, 364) for i in range(1, 1001)]
    n = plan(records, max_bytes=10_000, max_files=1000)
    assert 1 < n < 1000
    assert plan(records[:5], max_bytes=10, max_files=1000) == 1
    blobs = [Record(i, "image", "t", 1, "{}", f"{i}.jpg", 1000) for i in range(1, 11)]
    assert plan(blobs, max_bytes=1 << 20, max_files=4) == 3  # records.jsonl counts as a file


def test_a_fresh_id_after_a_conflict_is_another_id_the_server_accepts() -> None:
    plain, fresh = package_id("dev-1", 1, 4), package_id("dev-1", 1, 4, attempt=2)
    assert fresh == f"{plain}.r2" and re.fullmatch(PACKAGE_ID_PATTERN, fresh)
    package = build("dev-1", _records(), BLOBS.__getitem__, ImagePolicy(), attempt=2)
    assert package.package_id == read_manifest(package.body)["package_id"] == fresh
    assert package.body != build("dev-1", _records(), BLOBS.__getitem__, ImagePolicy()).body
