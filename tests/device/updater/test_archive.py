"""Safe unpacking: only plain files at the tar root, within the limits; nothing written on refusal."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from device.errors import UnsafeArchiveError
from device.updater.archive import extract_bundle
from device.updater.settings import ArchiveLimits


def make_tar(path: Path, members: list[tuple[str, bytes, bytes]]) -> Path:
    """members: (name, type, data) with tarfile's type codes."""
    with tarfile.open(path, "w") as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.REGTYPE:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                info.linkname = data.decode()
                tar.addfile(info)
    return path


def test_plain_files_are_extracted(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "b.tar", [("./bundle.json", tarfile.REGTYPE, b"{}"),
                                            ("labels.txt", tarfile.REGTYPE, b"0\n")])
    (tmp_path / "out").mkdir()
    assert extract_bundle(archive, tmp_path / "out", ArchiveLimits()) == ["bundle.json", "labels.txt"]
    assert (tmp_path / "out" / "labels.txt").read_bytes() == b"0\n"


@pytest.mark.parametrize(("members", "message"), [
    ([("../x", tarfile.REGTYPE, b"")], "plain file name"),
    (([("/etc/x", tarfile.REGTYPE, b"")]), "plain file name"),
    ([("sub/x", tarfile.REGTYPE, b"")], "plain file name"),
    ([("link", tarfile.SYMTYPE, b"/etc/passwd")], "not a regular file"),
    ([("hard", tarfile.LNKTYPE, b"labels.txt")], "not a regular file"),
    ([("dev", tarfile.CHRTYPE, b"")], "not a regular file"),
    ([("fifo", tarfile.FIFOTYPE, b"")], "not a regular file"),
    ([("a", tarfile.REGTYPE, b"1"), ("a", tarfile.REGTYPE, b"2")], "twice"),
    ([(f"f{i}", tarfile.REGTYPE, b"") for i in range(5)], "more than 4 members"),
    ([("big", tarfile.REGTYPE, b"x" * 101)], "over 100"),
    ([("a", tarfile.REGTYPE, b"x" * 80), ("b", tarfile.REGTYPE, b"x" * 80)], "more than 150 bytes"),
])
def test_unsafe_members_are_refused(tmp_path: Path, members: list[tuple[str, bytes, bytes]], message: str) -> None:
    archive = make_tar(tmp_path / "b.tar", members)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(UnsafeArchiveError, match=message):
        extract_bundle(archive, out, ArchiveLimits(max_members=4, max_member_bytes=100, max_total_bytes=150))
    assert list(out.iterdir()) == []


def test_not_a_tar(tmp_path: Path) -> None:
    (tmp_path / "b.tar").write_bytes(b"\x1f\x8b gzip or garbage" * 50)
    with pytest.raises(UnsafeArchiveError, match="not a readable tar"):
        extract_bundle(tmp_path / "b.tar", tmp_path, ArchiveLimits())
