"""Safe unpacking: every malicious or malformed archive is a `PackageError`, nothing escapes workdir."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from server.errors import PackageError
from server.worker.unpack import Limits, unpack
from tests.server.tar_bombs import header_block, sparse_map_bomb, then_zeros
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
    with pytest.raises(PackageError, match="extended header"):
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


# --- memory follows what was read, never what a header declares ------------------------------------------

PRODUCTION = Limits(max_bytes=256 << 20, max_members=5000)  # the server's defaults
MEMORY_BOUND = 2 << 20  # copy chunk, tarfile's buffers and one member's headers, whatever the package says
def _peak_while(action: Callable[[], object]) -> tuple[int, Exception | None]:
    """Peak bytes traced while `action` ran, and what it raised."""
    tracemalloc.start()
    try:
        action()
        error: Exception | None = None
    except Exception as exc:  # noqa: BLE001 - the caller asserts on it
        error = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak, error


@pytest.mark.parametrize(
    ("archive", "reason"),
    [
        (lambda: then_zeros(header_block(tarfile.XHDTYPE, 2 << 30), 2048), "declares 2147483648 bytes of extended"),
        (lambda: then_zeros(header_block(tarfile.XGLTYPE, 2 << 30), 2048), "global pax header"),
        (lambda: then_zeros(header_block(tarfile.GNUTYPE_LONGNAME, 2 << 30), 2048), "extended header"),
        (lambda: then_zeros(header_block(tarfile.GNUTYPE_SPARSE, 2 << 30), 2048), "sparse file"),
        (sparse_map_bomb, "tar headers of one member exceed"),
        (lambda: then_zeros(header_block(tarfile.REGTYPE, 2 << 30), 2048), "members exceed"),
    ],
    ids=["pax-2GiB", "global-pax-2GiB", "gnu-longname-2GiB", "old-gnu-sparse", "sparse-1.0-map", "member-2GiB"],
)
def test_a_declared_size_never_becomes_memory(tmp_path: Path, archive: Callable[[], bytes], reason: str) -> None:
    # Each archive is about 2 MB that really expands to the 2 GiB its header claims.
    data = archive()
    assert len(data) < 4 << 20
    peak, error = _peak_while(lambda: _unpack(tmp_path, data, limits=PRODUCTION))
    assert peak < MEMORY_BOUND, f"peak {peak} bytes"
    assert isinstance(error, PackageError) and reason in str(error)


def test_a_malformed_sparse_map_is_a_bad_package(tmp_path: Path) -> None:
    pax = tarfile.TarInfo("blobs/x")
    pax.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.realsize": "1"}
    pax.size = 512
    with pytest.raises(PackageError, match="not a valid tar.gz"):
        _unpack(tmp_path, gzip.compress(pax.tobuf(format=tarfile.PAX_FORMAT) + b"many\n".ljust(512, b"\0")))


def _manifest_then_pax_dirs(comment: str, count: int) -> bytes:
    """A valid manifest, then `count` copies of the allowed "blobs" directory, each with a pax `comment`."""
    blobs = tarfile.TarInfo("blobs")
    blobs.type = tarfile.DIRTYPE
    blobs.pax_headers = {"comment": comment}
    manifest = _valid_manifest()
    head = header_block(tarfile.REGTYPE, len(manifest)) + manifest + bytes(-len(manifest) % 512)
    return gzip.compress(head + blobs.tobuf(format=tarfile.PAX_FORMAT) * count)


def test_headers_count_against_the_package_budget(tmp_path: Path) -> None:
    # Each member is the allowed "blobs" directory with a 1 KiB pax record, within its own header budget;
    # together they pass the package's (payload plus 1 KiB per allowed member) before the member limit.
    data = _manifest_then_pax_dirs("0" * 900, 100)
    with pytest.raises(PackageError, match="size limit"):
        _unpack(tmp_path, data, limits=Limits(max_bytes=4096, max_members=50))


def test_headers_are_not_kept_after_their_member(tmp_path: Path) -> None:
    # 3000 members, each with a 900-byte pax record: within every budget, and held one at a time.
    data = _manifest_then_pax_dirs("x" * 900, 3000)
    peak, error = _peak_while(lambda: _unpack(tmp_path, data, limits=PRODUCTION))
    assert peak < MEMORY_BOUND, f"peak {peak} bytes"
    assert isinstance(error, PackageError) and "missing" in str(error)


def test_records_beyond_their_limit_are_refused_before_parsing(tmp_path: Path) -> None:
    lines = b"".join(json.dumps(record(seq, "log", {"message": "x" * 100})).encode() + b"\n" for seq in range(400))
    spec = PackageSpec(DEVICE, [], package_id="p1",
                       manifest_overrides={"seq_first": 0, "seq_last": 399, "record_count": 400})
    manifest = json.dumps(manifest_for(spec, {"records.jsonl": lines})).encode()
    data = raw_tar([("manifest.json", manifest), ("records.jsonl", lines)])
    limits = Limits(max_bytes=1 << 20, max_members=50, max_records_bytes=len(lines) - 1)
    with pytest.raises(PackageError, match=f"records.jsonl is {len(lines)} bytes, more than {len(lines) - 1}"):
        _unpack(tmp_path, data, limits=limits)
    (tmp_path / "ok").mkdir()
    assert len(_unpack(tmp_path / "ok", data, limits=Limits(1 << 20, 50, len(lines))).records) == 400


def test_a_large_valid_package_streams_its_blobs(tmp_path: Path) -> None:
    # 64 MiB of blobs pass through one copy chunk at a time.
    blobs = {f"b{i}.bin": bytes([i]) * (16 << 20) for i in range(4)}
    records = [record(i + 1, "image", {}, blob=f"blobs/b{i}.bin") for i in range(4)]
    data = build_package(PackageSpec(DEVICE, records, blobs=blobs, package_id="p1"))
    del blobs
    peak, error = _peak_while(lambda: _unpack(tmp_path, data, limits=PRODUCTION))
    assert error is None
    assert (tmp_path / "files" / "blobs" / "b3.bin").stat().st_size == 16 << 20
    assert peak < MEMORY_BOUND, f"peak {peak} bytes"
