"""From a blank card to an enrolled device: flash an image with an operator token (the enrollment token is
made at flash time), do what the first-boot script does with the card's files, and enroll for real."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from device.provision import Provisioner, ProvisionSettings
from device.sync.identity import load_identity
from tests.delivery.images import build_image, read_boot, tuf_root
from tests.delivery.server_api import get_device

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "flash-device"


def flash(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def test_flash_with_operator_token_then_first_boot_enrolls(tmp_path: Path, server_url: str, operator: str) -> None:
    image, card, root = build_image(tmp_path / "raspios.img"), tmp_path / "card.bin", tuf_root(tmp_path / "root.json")
    card.write_bytes(b"\0" * (16 << 20))
    out = flash(image, "--server", server_url, "--operator-token", operator, "--tag", "lab", "--tag", "zone=a",
                "--root-json", root, "--hostname", "tiny-07", "--write", card, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["target"]["verified"] is True

    # first boot (firstrun.sh): the card's tinymlops/ directory moves to the provisioning directory
    data_dir = tmp_path / "data"
    (data_dir / "provision").mkdir(parents=True)
    for name in ("provision.json", "root.json"):
        (data_dir / "provision" / name).write_bytes(read_boot(card, f"/tinymlops/{name}"))
    provision = json.loads((data_dir / "provision" / "provision.json").read_text())
    assert provision["enrollment_token"].startswith("tse_")

    settings = ProvisionSettings.for_data_dir(data_dir)
    settings = ProvisionSettings(**{**settings.__dict__, "search": (data_dir / "provision" / "provision.json",)})
    status = Provisioner(settings, clock=lambda: datetime.now(UTC), rng=random.Random(0)).attempt()
    assert status.state == "enrolled", status.detail
    identity = load_identity(settings.identity_path)
    assert identity is not None
    device = get_device(server_url, identity.device_id, identity.secret)
    assert device["name"] == "tiny-07" and sorted(device["tags"]) == ["lab", "zone=a"]
    assert device["hardware"]["machine"]
    assert (data_dir / "tuf" / "root.json").read_bytes() == root.read_bytes()


def test_dry_run_creates_no_token(tmp_path: Path, server_url: str, operator: str) -> None:
    image, root = build_image(tmp_path / "raspios.img"), tuf_root(tmp_path / "root.json")
    out = flash(image, "--server", server_url, "--operator-token", operator, "--root-json", root, "--dry-run",
                "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["token"] == "created at flash time"


def test_refused_operator_token(tmp_path: Path, server_url: str) -> None:
    image, root = build_image(tmp_path / "raspios.img"), tuf_root(tmp_path / "root.json")
    out = flash(image, "--server", server_url, "--operator-token", "tso_" + "n" * 43, "--root-json", root,
                "--output", tmp_path / "out.img")
    assert out.returncode == 1 and "refused to create an enrollment token: HTTP 401" in out.stderr
    assert not (tmp_path / "out.img").exists()
