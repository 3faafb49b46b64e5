"""No real-time clock: a clock far behind must not revive expired metadata, one far ahead must not brick."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from device.updater import State, TrustedClock
from device.updater.clock import RELEASE_FLOOR
from tests.device.updater.fakes import V2, V2_TARGET, desire, drive, live_version, make_device, make_updater
from tests.device.updater.tuf_server import Mirror, TufRepo, bundle_tar, custom_field

YEAR_1970 = datetime(1970, 1, 1, tzinfo=UTC)
YEAR_2040 = datetime(2040, 1, 1, tzinfo=UTC)


def fixed(moment: datetime) -> TrustedClock:
    return TrustedClock(Path("/nonexistent/trusted_time.json"), now=lambda: moment)


def test_clock_behind_cannot_revive_expired_metadata(data_dir: Path, repo: TufRepo, mirror: Mirror) -> None:
    clock_path = data_dir / "state" / "trusted_time.json"
    updater = make_updater(data_dir, mirror.url, clock=TrustedClock(clock_path))
    desire(data_dir)
    assert drive(updater) is State.COMMITTED  # at the true time: the floor moves up to it
    floor = TrustedClock(clock_path).floor()
    assert datetime.now(UTC) - floor < timedelta(minutes=5)
    repo.publish(timestamp_expires=datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1))  # frozen
    reboot = make_updater(data_dir, mirror.url, clock=TrustedClock(clock_path, now=lambda: YEAR_1970))
    desire(data_dir, target="digits/1.0.0/bundle.tar", version="1.0.0")
    drive(reboot, until=lambda u: u.record.state is State.IDLE, max_steps=5)
    assert reboot.record.reason is not None and reboot.record.reason.startswith("metadata_expired")
    assert live_version(data_dir) == "2.0.0"
    assert TrustedClock(clock_path).floor() == floor  # a 1970 clock never lowers the floor


def test_fresh_device_in_1970_refuses_metadata_expired_before_release(tmp_path: Path) -> None:
    repo = TufRepo()
    repo.add_target(V2_TARGET, bundle_tar(V2), custom_field(V2))
    repo.publish(timestamp_expires=RELEASE_FLOOR - timedelta(days=30))
    data_dir = make_device(tmp_path / "data", repo)
    with Mirror(repo) as mirror:
        updater = make_updater(data_dir, mirror.url, clock=TrustedClock(data_dir / "state" / "t.json",
                                                                         now=lambda: YEAR_1970))
        desire(data_dir)
        drive(updater, until=lambda u: u.record.state is State.IDLE and u.record.event_seq > 0, max_steps=5)
        assert updater.record.reason is not None and updater.record.reason.startswith("metadata_expired")
        assert live_version(data_dir) == "1.0.0"


def test_clock_far_ahead_waits_then_recovers(data_dir: Path, mirror: Mirror) -> None:
    clock_path = data_dir / "state" / "trusted_time.json"
    ahead = make_updater(data_dir, mirror.url, clock=TrustedClock(clock_path, now=lambda: YEAR_2040))
    desire(data_dir)
    drive(ahead, until=lambda u: u.record.state is State.IDLE and u.record.event_seq > 0, max_steps=5)
    assert ahead.record.reason is not None and ahead.record.reason.startswith("metadata_expired")
    assert live_version(data_dir) == "1.0.0" and ahead.slots.live() == "slot-a"  # still classifying
    assert not clock_path.exists()  # the wrong clock did not raise the floor
    assert ahead.record.rejected == {}  # and the target is not blacklisted: it is tried again
    fixed_clock = make_updater(data_dir, mirror.url, clock=TrustedClock(clock_path))  # NTP came back
    assert drive(fixed_clock) is State.COMMITTED and live_version(data_dir) == "2.0.0"


def test_floor_only_moves_forward(tmp_path: Path) -> None:
    path = tmp_path / "trusted_time.json"
    clock = TrustedClock(path, now=lambda: YEAR_1970)
    assert clock.floor() == RELEASE_FLOOR and clock.reference_time() == RELEASE_FLOOR
    later = RELEASE_FLOOR + timedelta(days=100)
    clock.vouch(later)
    clock.vouch(RELEASE_FLOOR + timedelta(days=1))
    assert clock.floor() == later and clock.reference_time() == later and clock.skew_s() > 0
    path.write_text("{broken")
    assert clock.floor() == RELEASE_FLOOR
    path.write_text(json.dumps({"not_before": later.isoformat()}))
    assert TrustedClock(path, now=lambda: YEAR_2040).reference_time() == YEAR_2040


def test_repository_judges_expiry_at_the_trusted_time(data_dir: Path, mirror: Mirror) -> None:
    from device.updater.repository import BundleRepository

    repository = BundleRepository(mirror.url, "device-secret-1", data_dir / "tuf", data_dir / "tuf" / "downloads",
                                  fixed(YEAR_1970))
    client = repository._client()  # pins the private ngclient attribute this relies on
    assert client._trusted_set.reference_time == RELEASE_FLOOR
