"""The TUF attack checklist and the bundle faults: none of them ever makes a bundle live."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner

from device.updater import State, Updater
from tests.device.updater.fakes import FACTORY, V2, V2_TARGET, desire, drive, live_version, make_updater, variant
from tests.device.updater.tuf_server import Mirror, TufRepo, add_bundle, bundle_tar, custom_field, file_list


def attempt(updater: Updater) -> str:
    """One update round; the round must end back in IDLE with the live model untouched; returns the reason."""
    desire(updater.settings.data_dir, **_desired_of(updater))
    drive(updater, until=lambda u: u.record.state is State.IDLE and u.record.event_seq > 0, max_steps=5)
    assert updater.record.state is State.IDLE, updater.record
    assert live_version(updater.settings.data_dir) == "1.0.0" and updater.slots.live() == "slot-a"
    assert not updater.slots.staging.exists()
    assert list((updater.settings.downloads_dir / "partial").glob("*")) == []
    return str(updater.record.reason)


def _desired_of(updater: Updater) -> dict[str, str]:
    return getattr(updater, "_test_desired", {})


def test_byte_changed_in_bundle(data_dir: Path, repo: TufRepo, mirror: Mirror) -> None:
    url = repo.target_url_path(V2_TARGET)
    data = bytearray(repo.files[url])
    data[5000] ^= 0xFF
    repo.files[url] = bytes(data)
    assert attempt(make_updater(data_dir, mirror.url)).startswith("hash_mismatch")


def test_swapped_object_on_the_mirror(data_dir: Path, repo: TufRepo, mirror: Mirror) -> None:
    repo.files[repo.target_url_path(V2_TARGET)] = bundle_tar(FACTORY)  # a real bundle, but not the signed one
    assert attempt(make_updater(data_dir, mirror.url)).startswith("hash_mismatch")


def test_targets_signed_by_unknown_key(data_dir: Path, repo: TufRepo, mirror: Mirror) -> None:
    repo.publish(targets_signers=[CryptoSigner.generate_ed25519()])
    assert attempt(make_updater(data_dir, mirror.url)).startswith("bad_signature")


def test_fewer_signatures_than_threshold(tmp_path: Path) -> None:
    from tests.device.updater.fakes import make_device

    repo = TufRepo(targets_threshold=2)
    repo.add_target(V2_TARGET, bundle_tar(V2), custom_field(V2))
    repo.publish(targets_signers=repo.signers["targets"][:1])
    data_dir = make_device(tmp_path / "data", repo)
    with Mirror(repo) as mirror:
        assert attempt(make_updater(data_dir, mirror.url)).startswith("bad_signature")
        repo.publish()  # both signatures: accepted
        updater = make_updater(data_dir, mirror.url)
        assert drive(updater) is State.COMMITTED


def test_freeze_expired_timestamp(data_dir: Path, repo: TufRepo, mirror: Mirror) -> None:
    repo.publish(timestamp_expires=datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1))
    assert attempt(make_updater(data_dir, mirror.url)).startswith("metadata_expired")


def test_rollback_to_older_metadata(data_dir: Path, repo: TufRepo, mirror: Mirror, tmp_path: Path) -> None:
    old_timestamp = repo.files["metadata/timestamp.json"]
    repo.publish()
    updater = make_updater(data_dir, mirror.url)
    desire(data_dir)
    assert drive(updater) is State.COMMITTED  # the device now trusts the newer timestamp
    v3 = variant(tmp_path, "3.0.0")
    repo.add_target("digits/3.0.0/bundle.tar", bundle_tar(v3), custom_field(v3))
    repo.publish()
    repo.files["metadata/timestamp.json"] = old_timestamp  # replayed by the attacker
    desire(data_dir, target="digits/3.0.0/bundle.tar", version="3.0.0")
    drive(updater, until=lambda u: u.record.state is State.IDLE, max_steps=5)
    assert updater.record.reason is not None and updater.record.reason.startswith("rollback_attack")
    assert live_version(data_dir) == "2.0.0"


def test_mix_and_match_metadata(data_dir: Path, repo: TufRepo, mirror: Mirror) -> None:
    version = repo.targets.signed.version
    repo.files[f"metadata/{version}.targets.json"] = repo.files[f"metadata/{version - 1}.targets.json"]
    assert attempt(make_updater(data_dir, mirror.url)).startswith("rollback_attack")


def test_endless_data(data_dir: Path, mirror: Mirror) -> None:
    mirror.extra_bytes = b"\0" * 300_000
    assert attempt(make_updater(data_dir, mirror.url)).startswith("too_long")


def test_target_not_signed(data_dir: Path, mirror: Mirror) -> None:
    updater = make_updater(data_dir, mirror.url)
    updater._test_desired = {"target": "digits/9.9.9/bundle.tar", "version": "9.9.9"}  # type: ignore[attr-defined]
    assert attempt(updater).startswith("unknown_target")


@pytest.mark.parametrize(("changes", "reason"), [
    ({"device_types": ["raspberrypi4-64"]}, "device_type"),
    ({"runtime": {"tflite_min": "2.99"}}, "runtime"),
    ({"input_shape": [1, 32, 32, 1]}, "input"),
    ({"input_dtype": "float32"}, "input"),
])
def test_bundle_for_another_device(data_dir: Path, repo: TufRepo, mirror: Mirror, changes: dict, reason: str) -> None:
    repo.add_target(V2_TARGET, bundle_tar(V2), custom_field(V2, **changes))
    repo.publish()
    updater = make_updater(data_dir, mirror.url)
    assert attempt(updater).startswith(reason)
    assert updater.record.rejected == {V2_TARGET: reason}
    assert not any(path.startswith("/tuf/targets/") for path, _ in mirror.requests)  # refused before download


def test_signed_field_must_match_bundle(data_dir: Path, repo: TufRepo, mirror: Mirror) -> None:
    repo.add_target(V2_TARGET, bundle_tar(FACTORY), custom_field(V2))  # signed as 2.0.0, holds 1.0.0
    repo.publish()
    assert attempt(make_updater(data_dir, mirror.url)).startswith("bundle_mismatch")


def test_model_that_fails_to_load_never_goes_live(data_dir: Path, repo: TufRepo, mirror: Mirror,
                                                  tmp_path: Path) -> None:
    broken = variant(tmp_path, "2.0.0", model=b"TFL3 not a flatbuffer" * 100)
    repo.add_target(V2_TARGET, bundle_tar(broken), custom_field(broken))
    repo.publish()
    updater = make_updater(data_dir, mirror.url, real_smoke=True)
    reason = attempt(updater)
    assert reason.startswith("bad_bundle") and "smoke test" in reason
    assert updater.record.rejected == {V2_TARGET: "bad_bundle"}


def test_unsafe_tar_member(data_dir: Path, repo: TufRepo, mirror: Mirror) -> None:
    repo.add_target(V2_TARGET, bundle_tar(V2, extra={"../escape.sh": b"#!/bin/sh\n"}), custom_field(V2))
    repo.publish()
    assert "plain file name" in attempt(make_updater(data_dir, mirror.url))
    assert not (data_dir / "models" / "escape.sh").exists()


def test_root_rotation_is_followed_and_a_forged_root_refused(data_dir: Path, repo: TufRepo, mirror: Mirror) -> None:
    repo.rotate_root()  # signed by the current root keys: a legitimate rotation
    updater = make_updater(data_dir, mirror.url)
    desire(data_dir)
    assert drive(updater) is State.COMMITTED
    assert (data_dir / "tuf" / "root_history" / "2.root.json").exists()
    repo.root.signed.version += 1
    forged = repo._sign(repo.root, "root", [CryptoSigner.generate_ed25519()])
    repo.files[f"metadata/{repo.root.signed.version}.root.json"] = forged
    desire(data_dir, target="digits/1.0.0/bundle.tar", version="1.0.0")
    drive(updater, until=lambda u: u.record.state is State.IDLE, max_steps=5)
    assert updater.record.reason is not None and updater.record.reason.startswith("bad_signature")
    assert live_version(data_dir) == "2.0.0"


# -- bundles as signed file lists: every file its own content-addressed target -------------------------------

V3_TARGET = "digits/3.0.0/bundle.tar"


def _delta_device(tmp_path: Path, repo: TufRepo) -> Path:
    from tests.device.updater.fakes import make_device

    return make_device(tmp_path / "data", repo)


def _with_v3(tmp_path: Path, repo: TufRepo) -> tuple[Path, dict]:
    """A second bundle (3.0.0, its own kNN state) published beside v2: the attacker's material."""
    from tests.device.updater.fakes import knn_variant

    v3 = knn_variant(tmp_path, "3.0.0", replaced=40)
    return v3, add_bundle(repo, V3_TARGET, v3)


def test_file_swapped_for_one_from_another_bundle(tmp_path: Path, delta_repo: TufRepo, delta_mirror: Mirror) -> None:
    v3, v3_files = _with_v3(tmp_path, delta_repo)
    delta_repo.publish()
    v2_knn = file_list(V2)["knn_state.npz"]
    swapped = (v3 / "knn_state.npz").read_bytes()
    delta_repo.files[delta_repo.target_url_path(v2_knn["target"])] = swapped  # served at v2's URL
    updater = make_updater(_delta_device(tmp_path, delta_repo), delta_mirror.url)
    reason = attempt(updater)
    # longer than signed: cut off at the signed length; otherwise the hash differs
    assert reason.startswith("too_long" if len(swapped) > v2_knn["length"] else "hash_mismatch")
    assert v2_knn["target"] in reason


def test_file_list_naming_another_bundles_file_target(tmp_path: Path, delta_repo: TufRepo,
                                                      delta_mirror: Mirror) -> None:
    _, v3_files = _with_v3(tmp_path, delta_repo)
    listed = file_list(V2)
    listed["knn_state.npz"] = {**listed["knn_state.npz"], "target": v3_files["knn_state.npz"]["target"]}
    add_bundle(delta_repo, V2_TARGET, V2, files=listed)  # signed, but the list and the target disagree
    delta_repo.publish()
    updater = make_updater(_delta_device(tmp_path, delta_repo), delta_mirror.url)
    reason = attempt(updater)
    assert reason.startswith("file_list_mismatch") and "the file list says" in reason
    assert updater.record.rejected == {V2_TARGET: "file_list_mismatch"}


def test_file_list_naming_an_unsigned_target(tmp_path: Path, delta_repo: TufRepo, delta_mirror: Mirror) -> None:
    listed = file_list(V2)
    listed["model.tflite"] = {**listed["model.tflite"], "target": f"digits/files/{'0' * 64}.tflite"}
    add_bundle(delta_repo, V2_TARGET, V2, files=listed)
    delta_repo.publish()
    reason = attempt(make_updater(_delta_device(tmp_path, delta_repo), delta_mirror.url))
    assert reason.startswith("file_list_mismatch") and "not a signed target" in reason


@pytest.mark.parametrize("edit", ["missing", "extra", "not_a_hash"])
def test_file_list_that_is_not_a_bundles(tmp_path: Path, delta_repo: TufRepo, delta_mirror: Mirror,
                                         edit: str) -> None:
    listed = file_list(V2)
    if edit == "missing":
        del listed["labels.txt"]
    elif edit == "extra":
        listed["../escape.sh"] = listed["labels.txt"]
    else:
        listed["labels.txt"] = {**listed["labels.txt"], "sha256": "labels"}
    add_bundle(delta_repo, V2_TARGET, V2, files=listed)
    delta_repo.publish()
    reason = attempt(make_updater(_delta_device(tmp_path, delta_repo), delta_mirror.url))
    assert reason.startswith("file_list_mismatch: digits/2.0.0/bundle.tar: signed file list")
    assert not any(path.startswith("/tuf/targets/") for path, _ in delta_mirror.requests)  # refused before download
    assert not (tmp_path / "data" / "models" / "escape.sh").exists()


def test_mix_of_versions_in_one_file_list(tmp_path: Path, delta_repo: TufRepo, delta_mirror: Mirror) -> None:
    """v2's list with 3.0.0's kNN state: every file is a signed target that hashes right, but they are files
    of different bundles, and v2's bundle.json says so."""
    _, v3_files = _with_v3(tmp_path, delta_repo)
    listed = {**file_list(V2), "knn_state.npz": v3_files["knn_state.npz"]}
    add_bundle(delta_repo, V2_TARGET, V2, files=listed)
    delta_repo.publish()
    updater = make_updater(_delta_device(tmp_path, delta_repo), delta_mirror.url)
    reason = attempt(updater)
    assert reason.startswith("file_list_mismatch") and "files of different bundles" in reason
    assert updater.record.rejected == {V2_TARGET: "file_list_mismatch"}


def test_mix_of_metadata_versions_hides_the_file_targets(tmp_path: Path, delta_repo: TufRepo,
                                                          delta_mirror: Mirror) -> None:
    """The newest snapshot with the targets metadata of before v2's files were published."""
    version = delta_repo.targets.signed.version
    delta_repo.files[f"metadata/{version}.targets.json"] = delta_repo.files[f"metadata/{version - 1}.targets.json"]
    assert attempt(make_updater(_delta_device(tmp_path, delta_repo), delta_mirror.url)).startswith("rollback_attack")
