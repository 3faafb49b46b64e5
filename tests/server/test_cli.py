"""`tinysphere` as an operator meets it: one error line and status 2, --version, help, and the fleet read over HTTP."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from server import cli
from server.cli import main
from server.config import Settings
from server.errors import InputError
from server.registry import offline
from server.startup import refuse_development_keys
from tests.server.registry.fixtures import Repo, publish, repo  # noqa: F401 - the session's TUF repository
from tests.server.utils import auth, enroll
from tests.utils.cli import parsers, undocumented

TINYSPHERE = [sys.executable, "-m", "server.cli"]


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"  # nothing listens once the socket is closed


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out = capsys.readouterr()
    return status, out.out, out.err


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("tinysphere: error: ")
    return lines[0]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("cli-keys") / "keys"
    offline.init(directory)
    return directory


def _bad_inputs(repo: Repo, keys: Path, tmp: Path) -> dict[str, tuple[list[str], str]]:  # noqa: F811
    (tmp / "junk.tar").write_bytes(b"not a tar at all")
    key = str(keys / "targets.key")
    return {
        "wrong token": (["devices", "list", "--server", repo.url, "--token", "tso_wrong"], "HTTP 401: "),
        "server not running": (["devices", "list", "--server", _closed_port(), "--token", "tso_x"],
                               "cannot reach http://127.0.0.1:"),
        "bad tar path": (["bundle", "publish", str(tmp / "missing.tar"), "--key", key, "--server", repo.url,
                          "--token", repo.operator_token], f"{tmp / 'missing.tar'}: No such file or directory"),
        "not a tar": (["bundle", "publish", str(tmp / "junk.tar"), "--key", key, "--server", repo.url,
                       "--token", repo.operator_token], "not a bundle tar"),
        "missing key file": (["bundle", "publish", str(tmp / "junk.tar"), "--key", str(tmp / "no.key"),
                              "--server", repo.url, "--token", repo.operator_token], f"cannot read key {tmp}"),
        "missing root.json": (["keys", "push-root", "--dir", str(tmp), "--server", repo.url, "--token", "x"],
                              f"{tmp / 'root.json'}: No such file or directory"),
        "HTTP 404": (["devices", "show", "no-such-device", "--server", repo.url, "--token", repo.operator_token],
                     "HTTP 404: "),
        "HTTP 403": (["keys", "push-root", "--dir", str(keys), "--server", repo.url, "--token",
                      repo.operator_token], "HTTP 403: "),
        "no server": (["rollouts", "list", "--server", "", "--token", "x"], "give --server URL or set TINYSPHERE_URL"),
        "HTTP 422": (["rollouts", "list", "--state", "s" * 17, "--server", repo.url, "--token", repo.operator_token],
                     "HTTP 422: query.state: String should have at most 16 characters"),
    }


CASES = ["wrong token", "server not running", "bad tar path", "not a tar", "missing key file", "missing root.json",
         "HTTP 404", "HTTP 403", "no server", "HTTP 422"]


@pytest.mark.parametrize("case", CASES)
def test_an_expected_error_is_one_line_and_status_2(case: str, repo: Repo, keys: Path, tmp_path: Path,  # noqa: F811
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    argv, expected = _bad_inputs(repo, keys, tmp_path)[case]
    status, _, err = _run(capsys, *argv)
    assert status == 2
    assert expected in _one_error_line(err)


def test_debug_adds_the_traceback(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    status, _, err = _run(capsys, "--debug", "devices", "list", "--server", repo.url, "--token", "tso_wrong")
    assert status == 2
    assert "Traceback (most recent call last)" in err and "server.errors.InputError" in err
    assert err.strip().splitlines()[-1].startswith("tinysphere: error: GET /api/v1/devices")


def test_a_real_process_says_one_line_for_a_server_that_is_not_running() -> None:
    url = _closed_port()
    out = subprocess.run([*TINYSPHERE, "rollouts", "list", "--server", url, "--token", "tso_x"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [f"tinysphere: error: cannot reach {url}: [Errno 111] Connection refused"]


def test_version_comes_from_the_installed_distribution(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"tinysphere {version('tinymlops')}"


def test_every_option_has_help() -> None:
    assert undocumented(cli._parser(), "tinysphere") == []


def test_token_help_names_the_role_each_command_needs() -> None:
    helps = {command: {a.dest: a.help for a in sub._actions} for command, sub in parsers(cli._parser(), "tinysphere")}
    assert "admin role" in helps["tinysphere keys push-root"]["token"]
    assert "admin role" in helps["tinysphere keys rotate"]["token"]
    assert "operator role" in helps["tinysphere bundle publish"]["token"]
    assert "viewer role" in helps["tinysphere rollouts watch"]["token"]


def test_help_names_the_environment(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for variable in ("TINYSPHERE_URL", "TINYSPHERE_TOKEN", "TINYSPHERE_DATA_DIR", "TINYSPHERE_DATABASE_URL"):
        assert variable in text


@pytest.mark.parametrize("argv", [["tokens", "create", "--role", "admin"], ["devices", "enroll-token"],
                                  ["migrate"], ["jobs", "requeue"], ["worker", "--once"]])
def test_local_commands_refuse_to_create_a_data_directory(argv: list[str], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("TINYSPHERE_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)  # the default ./tinysphere-data, as a newcomer in another directory has it
    status, out, err = _run(capsys, *argv)
    line = _one_error_line(err)
    assert status == 2 and out == ""
    assert f"no data directory at {tmp_path / 'tinysphere-data'}" in line and "--init" in line
    assert list(tmp_path.iterdir()) == []  # nothing created
    status, _, err = _run(capsys, *argv, "--data-dir", str(tmp_path / "elsewhere"))
    assert status == 2 and f"no data directory at {tmp_path / 'elsewhere'}" in _one_error_line(err)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv", [["serve", "--port", "0"], ["worker", "--once"], ["tokens", "create", "--role",
                                                                                  "admin"]])
def test_production_settings_refuse_development_keys(argv: list[str], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    offline.init_development(data / "tuf")  # what a zero-configuration `serve` made there
    monkeypatch.setenv("TINYSPHERE_ENVIRONMENT", "production")
    monkeypatch.setenv("TINYSPHERE_DATABASE_URL", "postgresql://tinysphere@127.0.0.1:9/never-reached")
    for name in ("SNAPSHOT_KEY", "SNAPSHOT_KEY_FILE", "TIMESTAMP_KEY", "TIMESTAMP_KEY_FILE"):
        monkeypatch.delenv(f"TINYSPHERE_TUF_{name}", raising=False)
    status, out, err = _run(capsys, "--data-dir", str(data), *argv)
    line = _one_error_line(err)
    assert status == 2 and out == ""
    assert f"is a development key (from {data / 'tuf'})" in line and "tinysphere keys init" in line


def _production(data: Path, **keys: Any) -> Settings:
    return Settings(environment="production", database_url="postgresql://tinysphere@db/tinysphere", data_dir=data,
                    **keys)


def test_only_production_settings_with_development_keys_are_refused(tmp_path: Path, keys: Path) -> None:
    development = tmp_path / "data" / "tuf"
    offline.init_development(development)
    copied = tmp_path / "elsewhere"
    copied.mkdir()
    shutil.copy(development / "timestamp.key", copied / "timestamp.key")
    refused = [_production(tmp_path / "data"),  # the keys where the server looks by default
               _production(tmp_path / "other", tuf_snapshot_key_file=development / "snapshot.key"),
               _production(tmp_path / "data", tuf_snapshot_key_file=keys / "snapshot.key",
                           tuf_timestamp_key_file=copied / "timestamp.key"),
               _production(tmp_path / "data", tuf_snapshot_key_file=keys / "snapshot.key",
                           tuf_timestamp_key=(development / "timestamp.key").read_text())]
    for settings in refused:
        with pytest.raises(InputError, match="is a development key"):
            refuse_development_keys(settings)
    real = {"tuf_snapshot_key_file": keys / "snapshot.key", "tuf_timestamp_key_file": keys / "timestamp.key"}
    refuse_development_keys(_production(tmp_path / "data", **real))  # the operator's keys, from `keys init`
    refuse_development_keys(Settings(data_dir=tmp_path / "data"))  # zero configuration: not production
    refuse_development_keys(_production(tmp_path / "data").model_copy(update={"environment": "development"}))


# ---------------------------------------------------------------- the fleet, read over HTTP

@pytest.fixture(scope="module")
def fleet(repo: Repo, client: TestClient, operator_token: str,  # noqa: F811
          tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Three devices tagged cli-fleet, bundle 8.0.0 published, a rollout of it to them, then aborted."""
    devices = [enroll(client, operator_token, name=f"cli-{n}", tags=["cli-fleet"]) for n in range(3)]
    publish(repo, tmp_path_factory.mktemp("cli-bundles"), "8.0.0")
    body = {"model": "digits", "bundle_version": "8.0.0", "selector": {"tags": ["cli-fleet"]},
            "waves": [{"count": 1, "soak_s": 10}, {"fraction": 1.0, "soak_s": 10}]}
    created = client.post("/api/v1/rollouts", json=body, headers=auth(operator_token))
    assert created.status_code == 201, created.text
    rollout = created.json()
    aborted = client.post(f"/api/v1/rollouts/{rollout['id']}/abort", headers=auth(operator_token))
    assert aborted.status_code == 200, aborted.text
    return {"devices": [d.device_id for d in devices], "rollout": rollout["id"]}


def _api(repo: Repo, token: str) -> list[str]:  # noqa: F811
    return ["--server", repo.url, "--token", token]


def test_devices_list_follows_every_page(repo: Repo, fleet: dict[str, Any], viewer_token: str,  # noqa: F811
                                         monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("server.fleet_console.PAGE", 2)  # three devices: two pages
    status, out, _ = _run(capsys, "devices", "list", "--tag", "cli-fleet", "--json", *_api(repo, viewer_token))
    assert status == 0
    assert sorted(d["id"] for d in json.loads(out)) == sorted(fleet["devices"])
    status, out, _ = _run(capsys, "devices", "list", "--tag", "cli-fleet", *_api(repo, viewer_token))
    lines = out.splitlines()
    assert status == 0 and lines[0].split() == ["id", "name", "status", "model_version", "update_state", "last_seen"]
    assert sorted(line.split()[0] for line in lines[1:]) == sorted(fleet["devices"])


def test_devices_show(repo: Repo, fleet: dict[str, Any], viewer_token: str,  # noqa: F811
                      capsys: pytest.CaptureFixture[str]) -> None:
    device = fleet["devices"][0]
    status, out, _ = _run(capsys, "devices", "show", device, *_api(repo, viewer_token))
    assert status == 0
    fields = {}
    for line in out.splitlines():
        key, _, value = line.strip().partition("  ")
        fields[key] = value.strip()
    assert fields["id"] == device and fields["name"] == "cli-0" and fields["tags"] == '["cli-fleet"]'


def test_rollouts_list_and_show(repo: Repo, fleet: dict[str, Any], viewer_token: str,  # noqa: F811
                                capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = _run(capsys, "rollouts", "list", "--state", "aborted", "--json", *_api(repo, viewer_token))
    assert status == 0
    mine = [r for r in json.loads(out) if r["id"] == fleet["rollout"]]
    assert [(r["bundle_version"], r["state"]) for r in mine] == [("8.0.0", "aborted")]
    status, out, _ = _run(capsys, "rollouts", "show", str(fleet["rollout"]), *_api(repo, viewer_token))
    assert status == 0
    assert re.search(r"^\s*bundle_version\s+8\.0\.0$", out, re.M) and re.search(r"^\s*state\s+aborted$", out, re.M)
    assert "wave 1: 1 device(s)" in out and "wave 2: 2 device(s)" in out


def test_rollouts_watch_prints_each_decision_and_ends_with_the_rollout(repo: Repo, fleet: dict[str, Any],  # noqa: F811
                                                                      viewer_token: str,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = _run(capsys, "rollouts", "watch", str(fleet["rollout"]), "--interval", "0.1",
                            *_api(repo, viewer_token))
    assert status == 1  # aborted
    lines = out.splitlines()
    assert re.search(r" aborted: aborted by ", lines[-2]) and lines[-1] == f"rollout {fleet['rollout']} aborted"
    assert f"rollout {fleet['rollout']} aborted, wave" in err  # the progress bar


def test_a_missing_rollout_is_one_line(repo: Repo, viewer_token: str,  # noqa: F811
                                       capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = _run(capsys, "rollouts", "watch", "999999", *_api(repo, viewer_token))
    assert status == 2 and "HTTP 404: " in _one_error_line(err)


def test_rollouts_watch_follows_a_running_rollout_until_it_ends(repo: Repo, fleet: dict[str, Any],  # noqa: F811
                                                                client: TestClient, operator_token: str,
                                                                viewer_token: str) -> None:
    """A real process watches while the rollout is paused, resumed and aborted: each decision shows once."""
    body = {"model": "digits", "bundle_version": "8.0.0", "selector": {"tags": ["cli-fleet"]},
            "waves": [{"fraction": 1.0, "soak_s": 10}]}
    rollout = client.post("/api/v1/rollouts", json=body, headers=auth(operator_token)).json()["id"]
    watch = subprocess.Popen([*TINYSPHERE, "rollouts", "watch", str(rollout), "--interval", "0.1",
                              *_api(repo, viewer_token)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert watch.stderr is not None
    bar = ""

    def wait_for(state: str) -> None:  # the bar's description, redrawn on each poll
        nonlocal bar
        while f"rollout {rollout} {state}, wave" not in bar:
            char = watch.stderr.read(1)  # type: ignore[union-attr]
            assert char, bar
            bar += char

    try:
        for action, state in (("pause", "running"), ("resume", "paused"), ("abort", "running")):
            wait_for(state)
            answer = client.post(f"/api/v1/rollouts/{rollout}/{action}", headers=auth(operator_token))
            assert answer.status_code == 200, answer.text
        out, _ = watch.communicate(timeout=60)
    finally:
        watch.kill()
    assert watch.returncode == 1
    *events, last = out.splitlines()
    assert [re.search(r" (\w+): ", line).group(1) for line in events] == [  # type: ignore[union-attr]
        "created", "paused", "resumed", "aborted"]
    assert last == f"rollout {rollout} aborted"


def test_bundle_publish_shows_upload_progress(repo: Repo, tmp_path: Path,  # noqa: F811
                                              capsys: pytest.CaptureFixture[str]) -> None:
    publish(repo, tmp_path, "7.2.0")
    out = capsys.readouterr()
    assert "published digits/7.2.0/bundle.tar" in out.out
    assert re.search(r"bundle\.tar: 100%\|.*\| [\d.]+k?i?B?/[\d.]+k?i?B?", out.err), out.err  # tqdm's bar, on stderr


def test_a_problem_is_one_line_with_every_validation_error_and_retry_after() -> None:
    from urllib3 import HTTPResponse

    from server.fleet_console import problem_message

    invalid = {"type": "https://tinymlops.dev/problems/invalid-request", "title": "Invalid request", "status": 422,
               "detail": "query.limit: too big (and 1 more)",
               "errors": [{"loc": ["query", "limit"], "msg": "too big", "type": "x"},
                          {"loc": ["query", "offset"], "msg": "too small", "type": "y"}]}
    answer = HTTPResponse(body=json.dumps(invalid).encode(), status=422, preload_content=True)
    assert problem_message(answer) == "HTTP 422: query.limit: too big (and 1 more); query.offset: too small"
    busy = {"title": "Too many requests", "status": 429}
    answer = HTTPResponse(body=json.dumps(busy).encode(), status=429, headers={"Retry-After": "30"},
                          preload_content=True)
    assert problem_message(answer) == "HTTP 429: Too many requests (retry after 30 s)"
    answer = HTTPResponse(body=b"<html>\n bad gateway\n</html>", status=502, preload_content=True)
    assert problem_message(answer) == "HTTP 502: <html> bad gateway </html>"


def test_bundle_publish_without_key_signs_with_the_development_set_of_the_data_dir(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from server.registry import console

    args = argparse.Namespace(key=None, data_dir=str(tmp_path))
    with pytest.raises(InputError, match="--key is required"):
        console._targets_key(args)  # no development set there: the offline key must be given
    (tmp_path / "tuf").mkdir()
    (tmp_path / "tuf" / offline.DEVELOPMENT_MARKER).write_text('{"keyids": ["abc"]}')
    assert console._targets_key(args) == tmp_path / "tuf" / "targets.key"
    assert "DEVELOPMENT targets key" in capsys.readouterr().err
    assert console._targets_key(argparse.Namespace(key="k.key", data_dir=None)) == Path("k.key")
