"""Resumable, authenticated downloads: cuts at random offsets, servers that ignore Range, a wrong secret."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from tuf.api import exceptions

from device.updater import State
from device.updater.fetcher import ResumableFetcher
from tests.device.updater.fakes import V2_TARGET, desire, drive, live_version, make_updater
from tests.device.updater.tuf_server import SECRET, Mirror, TufRepo


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cuts_at_random_offsets_resume(data_dir: Path, repo: TufRepo, mirror: Mirror, seed: int) -> None:
    size = len(repo.files[repo.target_url_path(V2_TARGET)])
    mirror.cut_at = sorted(random.Random(seed).sample(range(1, size), 6))
    updater = make_updater(data_dir, mirror.url)
    desire(data_dir)
    assert drive(updater) is State.COMMITTED and live_version(data_dir) == "2.0.0"
    ranges = [rng for path, rng in mirror.requests if path.startswith("/tuf/targets/")]
    assert len(ranges) == 7 and ranges[0] is None and all(r and r.startswith("bytes=") for r in ranges[1:])


def test_server_ignoring_range_restarts_from_zero(data_dir: Path, repo: TufRepo, mirror: Mirror) -> None:
    mirror.ignore_range = True
    mirror.cut_at = [20_000]
    updater = make_updater(data_dir, mirror.url)
    desire(data_dir)
    assert drive(updater) is State.COMMITTED and live_version(data_dir) == "2.0.0"


def test_fetcher_resumes_and_sends_the_secret(tmp_path: Path, repo: TufRepo, mirror: Mirror) -> None:
    url = f"{mirror.url}/tuf/{repo.target_url_path(V2_TARGET)}"
    data = repo.files[repo.target_url_path(V2_TARGET)]
    mirror.cut_at = [1000, 50_000]
    fetcher = ResumableFetcher(SECRET, tmp_path, f"{mirror.url}/tuf/targets/", sleep=lambda s: None)
    with fetcher.download_file(url, len(data)) as f:
        assert f.read() == data
    assert [rng for _, rng in mirror.requests] == [None, "bytes=1000-", "bytes=50000-"]
    assert not fetcher.partial_path(url).exists()


def test_partial_survives_failure_and_is_dropped_after_bad_hash(tmp_path: Path, repo: TufRepo,
                                                               mirror: Mirror) -> None:
    url = f"{mirror.url}/tuf/{repo.target_url_path(V2_TARGET)}"
    size = len(repo.files[repo.target_url_path(V2_TARGET)])
    mirror.cut_at = [1000]
    fetcher = ResumableFetcher(SECRET, tmp_path, f"{mirror.url}/tuf/targets/", sleep=lambda s: None)

    def fail_resumes(path: str) -> None:
        if mirror.requests[-1][1]:
            mirror.target_status.append(404)

    mirror.on_request = fail_resumes
    with pytest.raises(exceptions.DownloadHTTPError), fetcher.download_file(url, size):
        pass
    assert fetcher.partial_path(url).stat().st_size == 1000  # kept for the next round
    mirror.on_request = None
    with pytest.raises(RuntimeError), fetcher.download_file(url, size):
        raise RuntimeError("ngclient's hash check failed")
    assert not fetcher.partial_path(url).exists()


def test_wrong_secret_is_refused(data_dir: Path, mirror: Mirror) -> None:
    from device.sync.identity import Identity, save_identity

    save_identity(data_dir / "state" / "sync_identity.json", Identity("dev-1", "wrong"))
    updater = make_updater(data_dir, mirror.url)
    desire(data_dir)
    drive(updater, max_steps=3)
    assert updater.record.state is State.DOWNLOADING and updater.record.attempts >= 1
    assert updater.record.reason is not None and "refused the device secret" in updater.record.reason
    assert live_version(data_dir) == "1.0.0"


def test_a_target_shorter_than_signed_is_refused_not_fetched_forever(data_dir: Path, repo: TufRepo,
                                                                     mirror: Mirror) -> None:
    """The mirror serves fewer bytes than signed, each time whole (Content-Length says so): a Range for the rest
    gets 416, a restart from 0 regains nothing; the round ends with the length refused, in a few requests."""
    import threading

    url = repo.target_url_path(V2_TARGET)
    repo.files[url] = repo.files[url][:-1000]
    updater = make_updater(data_dir, mirror.url)
    desire(data_dir)
    worker = threading.Thread(target=drive, args=(updater, lambda u: u.record.state is State.IDLE), kwargs={
        "max_steps": 5}, daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "the download never ended"
    assert str(updater.record.reason).startswith("hash_mismatch") and live_version(data_dir) == "1.0.0"
    assert len([p for p, _ in mirror.requests if p.startswith("/tuf/targets/")]) == 1
