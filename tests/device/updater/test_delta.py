"""Updates that send only what changed: the slot is built from the files the slots hold plus fetched file
targets, each checked by hash; a full update, a first install and the old tar targets work too."""

from __future__ import annotations

import hashlib
from pathlib import Path

from contract.bundle import load_bundle
from device.updater import State
from device.updater.health import HealthSample
from tests.device.updater.fakes import (
    FACTORY,
    V2,
    V2_TARGET,
    FakeInference,
    desire,
    drive,
    knn_variant,
    live_version,
    make_device,
    make_updater,
    settings_for,
)
from tests.device.updater.tuf_server import Mirror, TufRepo, add_bundle, file_list


def fetched(mirror: Mirror) -> list[str]:
    """The target files the device asked for (hash-prefixed names), without metadata."""
    return sorted({path.removeprefix("/tuf/") for path, _ in mirror.requests if path.startswith("/tuf/targets/")})


def urls(repo: TufRepo, bundle: Path, names: list[str]) -> list[str]:
    listed = file_list(bundle)
    return sorted(repo.target_url_path(listed[name]["target"]) for name in names)


def changed(old: Path, new: Path) -> list[str]:
    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else ""

    return sorted(p.name for p in new.iterdir() if digest(p) != digest(old / p.name))


def test_full_update_fetches_every_changed_file_and_never_the_tar(tmp_path: Path, delta_repo: TufRepo,
                                                                   delta_mirror: Mirror) -> None:
    data_dir = make_device(tmp_path / "data", delta_repo)
    updater = make_updater(data_dir, delta_mirror.url)
    desire(data_dir)
    assert drive(updater) is State.COMMITTED
    assert live_version(data_dir) == "2.0.0" and load_bundle(data_dir / "models" / "current").version == "2.0.0"
    assert changed(FACTORY, V2) == sorted(file_list(V2))  # the factory and v2 share no file: a full update
    assert fetched(delta_mirror) == urls(delta_repo, V2, changed(FACTORY, V2))
    assert list((data_dir / "tuf" / "downloads").glob("*files*")) == []  # the slot is the copy that counts


def test_knn_only_update_fetches_the_knn_state_and_bundle_json(tmp_path: Path, delta_repo: TufRepo,
                                                               delta_mirror: Mirror) -> None:
    data_dir = make_device(tmp_path / "data", delta_repo)
    updater = make_updater(data_dir, delta_mirror.url)
    desire(data_dir)
    assert drive(updater) is State.COMMITTED
    v201 = knn_variant(tmp_path, "2.0.1")
    add_bundle(delta_repo, "digits/2.0.1/bundle.tar", v201)
    delta_repo.publish()
    delta_mirror.requests.clear()
    desire(data_dir, target="digits/2.0.1/bundle.tar", version="2.0.1")
    assert drive(updater) is State.COMMITTED
    assert changed(V2, v201) == ["bundle.json", "knn_state.npz"]
    assert fetched(delta_mirror) == urls(delta_repo, v201, ["bundle.json", "knn_state.npz"])
    live = load_bundle(data_dir / "models" / "current")  # every file hash checks out
    assert live.version == "2.0.1" and updater.slots.live() == "slot-a"
    # back to 2.0.0: every file is in the other slot, nothing is downloaded but metadata
    delta_mirror.requests.clear()
    desire(data_dir, target=V2_TARGET, version="2.0.0")
    assert drive(updater) is State.COMMITTED and live_version(data_dir) == "2.0.0"
    assert fetched(delta_mirror) == []


def test_a_device_with_no_earlier_version_fetches_everything(tmp_path: Path, delta_repo: TufRepo,
                                                             delta_mirror: Mirror) -> None:
    data_dir = make_device(tmp_path / "data", delta_repo)
    fake = FakeInference(data_dir / "models")

    def health() -> HealthSample:  # nothing runs before the first bundle is live
        return fake() if (data_dir / "models" / "current").exists() else HealthSample(reachable=False)

    updater = make_updater(data_dir, delta_mirror.url, health=health,
                           settings=settings_for(data_dir, delta_mirror.url, factory_bundle=None))
    assert updater.slots.live() is None and updater.record.live_version is None
    desire(data_dir)
    assert drive(updater) is State.COMMITTED
    assert load_bundle(data_dir / "models" / "current").version == "2.0.0"
    assert fetched(delta_mirror) == urls(delta_repo, V2, sorted(file_list(V2)))


def test_a_damaged_file_in_a_slot_is_fetched_not_reused(tmp_path: Path, delta_repo: TufRepo,
                                                        delta_mirror: Mirror) -> None:
    data_dir = make_device(tmp_path / "data", delta_repo)
    updater = make_updater(data_dir, delta_mirror.url)
    desire(data_dir)
    assert drive(updater) is State.COMMITTED
    model = data_dir / "models" / "slot-b" / "model.tflite"
    damaged = bytearray(model.read_bytes())
    damaged[1000] ^= 0x01  # bit rot in the live slot: same length, other bytes
    model.write_bytes(bytes(damaged))
    v201 = knn_variant(tmp_path, "2.0.1")
    add_bundle(delta_repo, "digits/2.0.1/bundle.tar", v201)
    delta_repo.publish()
    delta_mirror.requests.clear()
    desire(data_dir, target="digits/2.0.1/bundle.tar", version="2.0.1")
    assert drive(updater) is State.COMMITTED
    assert fetched(delta_mirror) == urls(delta_repo, v201, ["bundle.json", "knn_state.npz", "model.tflite"])
    assert load_bundle(data_dir / "models" / "current").version == "2.0.1"


def test_a_tar_only_target_still_installs(data_dir: Path, repo: TufRepo, mirror: Mirror) -> None:
    """Bundles published before file lists: the whole tar, as before."""
    updater = make_updater(data_dir, mirror.url)
    desire(data_dir)
    assert drive(updater) is State.COMMITTED
    assert fetched(mirror) == [repo.target_url_path(V2_TARGET)]
