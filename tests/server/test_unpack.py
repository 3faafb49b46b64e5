"""Safe unpacking: every malicious or malformed archive is a `PackageError`, nothing escapes workdir."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from server.errors import PackageError
from server.worker.unpack import Limits, unpack
from tests.server.utils import JPEG, PackageSpec, build_package, drift_record, manifest_for, raw_tar, record

LIMITS = Limits(max_bytes=1 << 20, max_members=50)
DEVICE = "dev-unpack"


def _unpack(tmp_path: Path, data: bytes, package_id: str = "p1", limits: Limits = LIMITS):  # type: ignore[no-untyped-def]
    archive = tmp_path / "p.tar.gz"
    archive.write_bytes(data)
    return unpack(archive, tmp_path / "files", limits, DEVICE, package_id)


def _valid_manifest(records: bytes = b"") -> bytes:
    spec = PackageSpec(DEVICE, [], package_id="p1", manifest_overrides={"seq_first": 0, "seq_last": 0})
    return json.dumps(manifest_for(spec, {"records.jsonl": records})).encode()


def test_a_valid_package_unpacks(tmp_path: Path) -> None:
    spec = PackageSpec(DEVICE, [drift_record(3, "blobs/f3.jpg"), record(4, "metric", {"name": "fps", "value": 4})],
                       blobs={"f3.jpg": JPEG}, package_id="p1")
    unpacked = _unpack(tmp_path, build_package(spec))
    assert [r.seq for r in unpacked.records] == [3, 4]
    assert unpacked.blob_path("blobs/f3.jpg").read_bytes() == JPEG


def _member(name: str, kind: bytes, **attrs: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    for key, value in attrs.items():
        setattr(info, key, value)
    return info


@pytest.mark.parametrize(
    "evil",
    [
        ("../escape.txt", b"x"),
        ("/etc/evil", b"x"),
        ("blobs/../../escape", b"x"),
        _member("blobs/link", tarfile.SYMTYPE, linkname="/etc/passwd"),
        _member("blobs/inside-link", tarfile.SYMTYPE, linkname="records.jsonl"),
        _member("blobs/hard", tarfile.LNKTYPE, linkname="records.jsonl"),
        _member("blobs/dev", tarfile.CHRTYPE, devmajor=1, devminor=3),
        _member("blobs/fifo", tarfile.FIFOTYPE),
    ],
    ids=["dotdot", "absolute", "nested-dotdot", "symlink-out", "symlink-in", "hardlink", "device", "fifo"],
)
def test_unsafe_members_are_rejected(tmp_path: Path, evil: tarfile.TarInfo | tuple[str, bytes]) -> None:
    data = raw_tar([("manifest.json", _valid_manifest()), ("records.jsonl", b""), evil])
    with pytest.raises(PackageError):
        _unpack(tmp_path, data)
    assert not (tmp_path / "escape.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["files", "p.tar.gz"]


def test_too_many_members(tmp_path: Path) -> None:
    files = {"records.jsonl": b"", **{f"blobs/b{i}": b"" for i in range(3000)}}
    spec = PackageSpec(DEVICE, [], package_id="p1", manifest_overrides={"seq_first": 0, "seq_last": 0})
    manifest = json.dumps(manifest_for(spec, files)).encode()
    members: list[tarfile.TarInfo | tuple[str, bytes]] = [("manifest.json", manifest)]
    members += list(files.items())
    with pytest.raises(PackageError, match="more than 50 members"):
        _unpack(tmp_path, raw_tar(members))


def test_decompression_bomb_is_stopped_while_streaming(tmp_path: Path) -> None:
    # 64 MiB of zeros compress to ~64 KiB; the declared size is honest, so only counting stops it.
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.addfile(tarfile.TarInfo("manifest.json"), io.BytesIO(b""))
        info = tarfile.TarInfo("blobs/zeros")
        info.size = 64 << 20
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    assert len(buffer.getvalue()) < 200_000
    with pytest.raises(PackageError):
        _unpack(tmp_path, buffer.getvalue())


def test_padding_bomb_after_a_huge_pax_header(tmp_path: Path) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("manifest.json")
        info.pax_headers = {"comment": "x" * (8 << 20)}
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(PackageError, match="size limit"):
        _unpack(tmp_path, gzip.compress(raw.getvalue()))


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([("manifest.json", b"{not json")], "invalid manifest"),
        ([("manifest.json", b'{"format": 1}')], "invalid manifest"),
        ([("records.jsonl", b""), ("manifest.json", b"{}")], "first member"),
        ([("manifest.json", _valid_manifest())], "missing"),
        ([("manifest.json", _valid_manifest()), ("records.jsonl", b""), ("extra.txt", b"x")], "not listed"),
        ([("manifest.json", _valid_manifest()), ("records.jsonl", b"tampered")], "bytes, manifest says"),
        ([], "empty archive"),
    ],
    ids=["not-json", "missing-fields", "manifest-not-first", "file-missing", "extra-file", "tampered", "empty"],
)
def test_malformed_packages(tmp_path: Path, members: list[tuple[str, bytes]], message: str) -> None:
    with pytest.raises(PackageError, match=message):
        _unpack(tmp_path, raw_tar(list(members)))


def test_not_gzip(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match="tar.gz"):
        _unpack(tmp_path, b"PK\x03\x04 a zip file")


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([record(1, "telepathy", {})], "line 1"),
        ([record(1, "log", {}), record(1, "log", {})], "repeated"),
        ([{"seq": 1, "kind": "log"}, "not an object"], "line 2"),
        ([record(1, "image", {}, blob="blobs/missing.jpg")], "not in the manifest"),
    ],
    ids=["unknown-kind", "duplicate-seq", "bad-line", "dangling-blob"],
)
def test_bad_records(tmp_path: Path, records: list[object], message: str) -> None:
    lines = "".join(json.dumps(r) + "\n" for r in records).encode()
    spec = PackageSpec(DEVICE, [], package_id="p1",
                       manifest_overrides={"seq_first": 0, "seq_last": 9, "record_count": len(records)})
    manifest = manifest_for(spec, {"records.jsonl": lines})
    data = raw_tar([("manifest.json", json.dumps(manifest).encode()), ("records.jsonl", lines)])
    with pytest.raises(PackageError, match=message):
        _unpack(tmp_path, data)


def test_manifest_must_match_upload(tmp_path: Path) -> None:
    spec = PackageSpec("dev-someone-else", [record(1, "log", {"message": "x"})], package_id="p1")
    with pytest.raises(PackageError, match="names device"):
        _unpack(tmp_path, build_package(spec))
    spec = PackageSpec(DEVICE, [record(1, "log", {"message": "x"})], package_id="p2")
    (tmp_path / "again").mkdir()
    with pytest.raises(PackageError, match="names package"):
        _unpack(tmp_path / "again", build_package(spec))
