"""The device identity on disk, and the key that makes its enrollment repeatable."""



def test_the_enrollment_attempt_key_is_made_once_and_kept_private(tmp_path) -> None:
    from device.sync.identity import attempt_key

    path = tmp_path / "state" / "sync_identity.json"
    path.parent.mkdir()
    key = attempt_key(path)
    assert len(key) >= 32 and attempt_key(path) == key  # every attempt, even after a reboot, sends the same
    assert (path.parent / "enrollment_attempt.key").stat().st_mode & 0o777 == 0o600
