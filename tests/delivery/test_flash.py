"""`scripts/flash-device` as an operator runs it, on small disk images built here and on a regular file
standing in for the SD card; the safety checks against /proc and /sys also on fake trees."""

from __future__ import annotations

import gzip
import hashlib
import importlib.machinery
import importlib.util
import json
import lzma
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.delivery.images import BOOT_START, build_image, list_boot, read_boot, tuf_root

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "flash-device"
TOKEN = "tse_" + "k" * 43
SERVER = "https://fleet.example.org"
Capsys = pytest.CaptureFixture[str]


def load_script() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("flash_device", str(SCRIPT))
    spec = importlib.util.spec_from_loader("flash_device", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["flash_device"] = module  # dataclasses look their module up
    loader.exec_module(module)
    return module


flash_device = load_script()


def flash(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def flash_in_process(capsys: Capsys, *args: str | Path) -> tuple[int, str]:
    """The script's main() in this process (quick, for the many bad-input cases): (status, stderr)."""
    status = flash_device.main([str(a) for a in args])
    return status, capsys.readouterr().err


def sha256(path: Path, size: int | None = None) -> str:
    with path.open("rb") as f:
        return hashlib.sha256(f.read(size) if size is not None else f.read()).hexdigest()


@pytest.fixture(scope="module")
def root_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tuf_root(tmp_path_factory.mktemp("tuf") / "root.json")


@pytest.fixture
def image(tmp_path: Path) -> Path:
    return build_image(tmp_path / "raspios.img")


@pytest.fixture
def card(tmp_path: Path) -> Path:
    """A 16 MiB file standing in for the card, filled with a pattern the image must overwrite."""
    path = tmp_path / "card.bin"
    path.write_bytes(b"\xa5" * (16 << 20))
    return path


def base_args(image: Path, root_json: Path) -> list[str | Path]:
    return [image, "--server", SERVER, "--token", TOKEN, "--root-json", root_json]


# ---- dry run, output and card ----

def test_dry_run_checks_everything_and_writes_nothing(image: Path, root_json: Path, card: Path) -> None:
    before, card_before = sha256(image), sha256(card)
    out = flash(*base_args(image, root_json), "--hostname", "tiny-01", "--write", card, "--dry-run", "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["dry_run"] is True and summary["os"] == "raspios"
    assert summary["files"] == ["/cmdline.txt", "/firstrun.sh", "/tinymlops/provision.json", "/tinymlops/root.json"]
    assert summary["boot_partition"]["offset"] == BOOT_START
    assert summary["target"] == {"path": str(card), "kind": "file"}
    assert TOKEN not in out.stdout  # masked
    assert sha256(image) == before and sha256(card) == card_before


def test_output_image_carries_provisioning_and_first_boot(image: Path, root_json: Path, tmp_path: Path) -> None:
    out_image = tmp_path / "custom.img"
    out = flash(*base_args(image, root_json), "--hostname", "tiny-01", "--wifi-ssid", "Lab Net",
                "--wifi-password", "correct horse", "--wifi-country", "DE", "--output", out_image)
    assert out.returncode == 0, out.stderr
    provision = json.loads(read_boot(out_image, "/tinymlops/provision.json"))
    assert provision["server_url"] == SERVER and provision["enrollment_token"] == TOKEN
    assert provision["device_name"] == "tiny-01" and provision["created_at"]
    assert read_boot(out_image, "/tinymlops/root.json") == root_json.read_bytes()
    firstrun = read_boot(out_image, "/firstrun.sh").decode()
    assert "NEW_HOSTNAME=tiny-01" in firstrun and "ssid=Lab Net" in firstrun
    assert "correct horse" not in firstrun  # only the derived PSK
    assert hashlib.pbkdf2_hmac("sha1", b"correct horse", b"Lab Net", 4096, 32).hex() in firstrun
    assert "/var/lib/tinymlops/provision" in firstrun
    cmdline = read_boot(out_image, "/cmdline.txt").decode()
    assert cmdline.count("systemd.run=/boot/firmware/firstrun.sh") == 1 and cmdline.endswith("\n")
    assert read_boot(out_image, "/config.txt") == read_boot(image, "/config.txt")  # the rest untouched
    assert "root=PARTUUID=4e639091-02" in cmdline


def test_flashing_twice_keeps_one_first_boot_entry(image: Path, root_json: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "first.img", tmp_path / "second.img"
    assert flash(*base_args(image, root_json), "--output", first).returncode == 0
    out = flash(*base_args(first, root_json), "--output", second)
    assert out.returncode == 0, out.stderr
    assert read_boot(second, "/cmdline.txt").decode().count("systemd.run=") == 1


def test_write_to_card_verifies_by_read_back(image: Path, root_json: Path, card: Path, tmp_path: Path) -> None:
    out_image = tmp_path / "custom.img"
    out = flash(*base_args(image, root_json), "--output", out_image, "--write", card, "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    size = out_image.stat().st_size
    assert summary["target"] == {"path": str(card), "kind": "file", "sha256": sha256(out_image), "verified": True}
    assert sha256(card, size) == sha256(out_image)
    with card.open("rb") as f:  # a card is written like dd: beyond the image, nothing changes
        f.seek(size)
        assert set(f.read()) == {0xA5}
    assert card.stat().st_size == 16 << 20
    assert "writing" in out.stderr and "verifying" in out.stderr and "100%" in out.stderr


def test_human_summary(image: Path, root_json: Path, card: Path) -> None:
    out = flash(*base_args(image, root_json), "--hostname", "tiny-02", "--write", card)
    assert out.returncode == 0, out.stderr
    assert "hostname  tiny-02" in out.stdout
    assert "verified" in out.stdout and str(card) in out.stdout
    assert TOKEN not in out.stdout


@pytest.mark.parametrize("suffix", [".xz", ".gz"])
def test_compressed_image(root_json: Path, tmp_path: Path, suffix: str) -> None:
    image = build_image(tmp_path / "raspios.img", root_size=64 << 10)
    packed = tmp_path / f"raspios.img{suffix}"
    compress = {".xz": lambda b: lzma.compress(b, preset=0), ".gz": lambda b: gzip.compress(b, compresslevel=1)}
    packed.write_bytes(compress[suffix](image.read_bytes()))
    out_image = tmp_path / "custom.img"
    out = flash(packed, *base_args(image, root_json)[1:], "--output", out_image)
    assert out.returncode == 0, out.stderr
    assert "tinymlops" in list_boot(out_image)
    assert sha256(image) != sha256(out_image) and out_image.stat().st_size == image.stat().st_size
    assert re.search(r"unpacking\s*: [\d.]+[kMG]?i?B ", out.stderr), out.stderr  # tqdm's byte count


def test_balenaos_gets_hostname_wifi_and_device_variables(root_json: Path, tmp_path: Path) -> None:
    image = build_image(tmp_path / "balena.img", flavour="balenaos")
    out_image = tmp_path / "custom.img"
    out = flash(*base_args(image, root_json), "--hostname", "tiny-03", "--wifi-ssid", "Lab",
                "--wifi-password", "12345678", "--wifi-country", "NL", "--output", out_image, "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["os"] == "balenaos"
    assert summary["device_variables"] == {"TINYMLOPS_SERVER_URL": SERVER, "TINYMLOPS_ENROLLMENT_TOKEN": TOKEN}
    config = json.loads(read_boot(out_image, "/config.json"))
    assert config["hostname"] == "tiny-03" and config["deviceType"] == "raspberrypi3"
    assert "tinymlops-wifi" in list_boot(out_image, "/system-connections")
    assert "tinymlops" not in list_boot(out_image)  # containers cannot read the boot partition
    assert "not configured for a fleet" in out.stderr  # the test image has no fleet config


# ---- bad inputs ----

def test_missing_image(root_json: Path, tmp_path: Path, capsys: Capsys) -> None:
    status, err = flash_in_process(capsys, *base_args(tmp_path / "nope.img", root_json), "--dry-run")
    assert status == 2 and "image not found" in err


def test_image_without_fat_partition(root_json: Path, tmp_path: Path, capsys: Capsys) -> None:
    image = build_image(tmp_path / "nofat.img", boot_kind=0x83, fat=False)
    status, err = flash_in_process(capsys, *base_args(image, root_json), "--dry-run")
    assert status == 2 and "no FAT boot partition" in err


def test_fat_type_without_fat_inside(root_json: Path, tmp_path: Path, capsys: Capsys) -> None:
    image = build_image(tmp_path / "blank.img", fat=False)
    status, err = flash_in_process(capsys, *base_args(image, root_json), "--dry-run")
    assert status == 2 and "no FAT boot partition" in err


def test_not_a_disk_image(root_json: Path, tmp_path: Path, capsys: Capsys) -> None:
    junk = tmp_path / "junk.img"
    junk.write_bytes(os.urandom(4096))
    status, err = flash_in_process(capsys, *base_args(junk, root_json), "--dry-run")
    assert status == 2 and "no MBR partition table" in err


def test_fat_volume_of_another_kind(root_json: Path, tmp_path: Path, capsys: Capsys) -> None:
    image = build_image(tmp_path / "other.img", flavour="other")
    status, err = flash_in_process(capsys, *base_args(image, root_json), "--dry-run")
    assert status == 2 and "neither a Raspberry Pi OS nor a balenaOS" in err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--server": "fleet.example.org"}, "--server must be an http(s) URL"),
        ({"--server": "ftp://fleet.example.org"}, "--server must be an http(s) URL"),
        ({"--server": "https://admin:pw@fleet.example.org"}, "must not carry credentials"),
        ({"--server": "https://fleet.example.org:99999"}, "bad port"),
        ({"--token": None}, "exactly one of --token"),
        ({"--token": "tso_" + "x" * 40}, "this is an operator token"),
        ({"--token": "hello"}, "--token must be an enrollment token"),
        ({"--wifi-ssid": "Lab"}, "--wifi-ssid needs --wifi-password"),
        ({"--wifi-ssid": "Lab", "--wifi-password": "short", "--wifi-country": "DE"}, "8-63 printable"),
        ({"--wifi-ssid": "Lab", "--wifi-password": "longenough"}, "--wifi-country must be"),
        ({"--wifi-password": "longenough"}, "need --wifi-ssid"),
        ({"--hostname": "Tiny_01"}, "--hostname 'Tiny_01'"),
        ({"--hostname": "-tiny"}, "--hostname '-tiny'"),
        ({"--tag": "lab"}, "--tag needs --operator-token"),
    ],
)
def test_bad_options(image: Path, root_json: Path, change: dict[str, str | None], message: str, capsys: Capsys) -> None:
    options: dict[str, str | None] = {"--server": SERVER, "--token": TOKEN, "--root-json": str(root_json)}
    options.update(change)
    args = [f"{key}={value}" for key, value in options.items() if value is not None]
    status, err = flash_in_process(capsys, image, *args, "--dry-run")
    assert status == 2, err
    assert message in err


def test_bad_root_json(image: Path, root_json: Path, tmp_path: Path, capsys: Capsys) -> None:
    tampered = json.loads(root_json.read_text())
    tampered["signed"]["version"] = 2  # the signature no longer matches
    bad = tmp_path / "root.json"
    bad.write_text(json.dumps(tampered))
    status, err = flash_in_process(capsys, image, "--server", SERVER, "--token", TOKEN, "--root-json", bad, "--dry-run")
    assert status == 2 and "not a valid, self-signed TUF root" in err
    bad.write_text("{}")
    status, err = flash_in_process(capsys, image, "--server", SERVER, "--token", TOKEN, "--root-json", bad, "--dry-run")
    assert status == 2 and "not a valid, self-signed TUF root" in err


def test_nothing_to_do(image: Path, root_json: Path, capsys: Capsys) -> None:
    status, err = flash_in_process(capsys, *base_args(image, root_json))
    assert status == 2 and "nothing to do" in err


@pytest.mark.parametrize("kind", ["missing", "small", "directory", "the image"])
def test_bad_targets(image: Path, root_json: Path, tmp_path: Path, kind: str, capsys: Capsys) -> None:
    target = {"missing": tmp_path / "sdz", "small": tmp_path / "small.bin", "directory": tmp_path,
              "the image": image}[kind]
    if kind == "small":
        target.write_bytes(b"\0" * 4096)
    status, err = flash_in_process(capsys, *base_args(image, root_json), "--write", target)
    assert status == 2, err
    expected = {"missing": "no such device or file", "small": "smaller than the image",
                "directory": "neither a block device nor a regular file", "the image": "the image itself"}[kind]
    assert expected in err
    assert not (tmp_path / "sdz").exists()


def system_disk() -> Path | None:
    """The block device mounted at / on this machine, if it is one."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == "/":
            source = Path(fields[fields.index("-") + 2])
            return source if source.is_block_device() else None
    return None


@pytest.mark.skipif(system_disk() is None, reason="/ is not on a block device here")
def test_refuses_the_system_disk(image: Path, root_json: Path, capsys: Capsys) -> None:
    # --dry-run: even a broken check could not write anything
    status, err = flash_in_process(capsys, *base_args(image, root_json), "--write", system_disk(), "--dry-run")
    assert status == 3, err
    assert "refusing the system disk: it holds /" in err


# ---- the safety checks on fake /proc and /sys trees ----

def fake_sysfs(tmp_path: Path) -> Path:
    """sda (8:0) with sda1 (8:1) and sda2 (8:2, holding dm-0 253:0); sdb (8:16) with sdb1 (8:17)."""
    sysfs = tmp_path / "sys"
    devices = sysfs / "devices"
    for disk, major_minor, parts in (("sda", "8:0", ["8:1", "8:2"]), ("sdb", "8:16", ["8:17"])):
        node = devices / disk
        node.mkdir(parents=True)
        (node / "dev").write_text(major_minor + "\n")
        (node / "size").write_text(str(1 << 24) + "\n")
        (sysfs / "dev" / "block").mkdir(parents=True, exist_ok=True)
        (sysfs / "dev" / "block" / major_minor).symlink_to(node)
        for n, part in enumerate(parts, 1):
            pnode = node / f"{disk}{n}"
            pnode.mkdir()
            (pnode / "dev").write_text(part + "\n")
            (pnode / "partition").write_text(f"{n}\n")
            (pnode / "holders").mkdir()
            (sysfs / "dev" / "block" / part).symlink_to(pnode)
    dm = devices / "dm-0"
    dm.mkdir()
    (dm / "dev").write_text("253:0\n")
    (devices / "sda" / "sda2" / "holders" / "dm-0").symlink_to(dm)
    return sysfs


def use(mounts: dict[str, str], swaps: set[str] | None = None):  # type: ignore[no-untyped-def]
    return flash_device.BlockDevice(mounts, swaps or set())


@pytest.mark.parametrize(
    ("devno", "mounts", "swaps", "message"),
    [
        ("8:0", {"253:0": "/"}, None, "refusing the system disk: it holds /"),
        ("8:0", {"8:1": "/boot/firmware"}, None, "refusing the system disk: it holds /boot/firmware"),
        ("8:16", {"8:17": "/media/pi/bootfs"}, None, "refusing a mounted device: /media/pi/bootfs"),
        ("8:16", {}, {"8:17"}, "in use as swap"),
        ("8:17", {}, None, "is a partition: give the whole card"),
    ],
)
def test_block_device_refusals(tmp_path: Path, devno: str, mounts: dict[str, str], swaps: set[str] | None,
                               message: str) -> None:
    with pytest.raises(flash_device.FlashError, match=message) as caught:
        flash_device.check_block_device(devno, fake_sysfs(tmp_path), use(mounts, swaps))
    assert caught.value.status == 3


def test_an_unused_card_is_accepted(tmp_path: Path) -> None:
    flash_device.check_block_device("8:16", fake_sysfs(tmp_path), use({"253:0": "/", "8:1": "/boot/firmware"}))


def test_mountinfo_parsing() -> None:
    mountinfo = ("27 1 8:2 / / rw,relatime - ext4 /dev/nonexistent2 rw\n"
                 "40 27 8:17 / /media/pi/bootfs rw - vfat /dev/nonexistent17 rw\n")
    parsed = flash_device.devices_in_use(mountinfo, "Filename Type Size Used Priority\n")
    assert parsed.mounted == {"8:2": "/", "8:17": "/media/pi/bootfs"} and parsed.swaps == set()


# ---- a real block device: a loop device over a file ----

@pytest.fixture
def loop_card(tmp_path: Path):  # type: ignore[no-untyped-def]
    backing = tmp_path / "loop-card.bin"
    backing.write_bytes(b"\xa5" * (16 << 20))
    try:
        attach = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True,
                                timeout=30)
    except FileNotFoundError:
        pytest.skip("no losetup")
    if attach.returncode != 0:
        pytest.skip(f"cannot attach a loop device: {attach.stderr.strip()}")
    device = Path(attach.stdout.strip())
    try:
        yield device, backing
    finally:
        subprocess.run(["losetup", "--detach", str(device)], check=False, timeout=30)


def test_write_to_a_block_device(image: Path, root_json: Path, loop_card, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    device, backing = loop_card
    out_image = tmp_path / "custom.img"
    out = flash(*base_args(image, root_json), "--output", out_image, "--write", device, "--yes", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["target"]["kind"] == "block"
    assert sha256(backing, out_image.stat().st_size) == sha256(out_image)


def test_block_device_in_use_is_refused(image: Path, root_json: Path, loop_card) -> None:  # type: ignore[no-untyped-def]
    device, backing = loop_card
    before = sha256(backing)
    holder = os.open(device, os.O_RDONLY | os.O_EXCL)  # as a mounted file system holds it
    try:
        out = flash(*base_args(image, root_json), "--write", device, "--yes")
    finally:
        os.close(holder)
    assert out.returncode == 3 and "cannot open" in out.stderr
    assert sha256(backing) == before


def test_block_device_needs_confirmation(image: Path, root_json: Path, loop_card) -> None:  # type: ignore[no-untyped-def]
    device, backing = loop_card
    before = sha256(backing)
    out = subprocess.run([sys.executable, str(SCRIPT), *map(str, base_args(image, root_json)), "--write", str(device)],
                         capture_output=True, text=True, timeout=120, input="no\n")
    assert out.returncode == 1 and "not confirmed" in out.stderr
    assert sha256(backing) == before
