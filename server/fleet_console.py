"""`tinysphere devices list|show` and `tinysphere rollouts list|show|watch`: the fleet, read over the API."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import urllib3

from server.errors import InputError, RemoteError
from server.rollouts.states import FINAL, DeviceState, RolloutState

_SERVICE = "tinysphere server"
PAGE = 500  # items asked for per request; `next` links fetch the rest


class ApiClient:
    """GETs with a viewer token: timeouts, jittered retries on 502/503/504, problem details as one-line errors."""

    def __init__(self, url: str, token: str, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        retries = urllib3.Retry(total=3, backoff_factor=0.5, backoff_jitter=0.5, status_forcelist=(502, 503, 504),
                                allowed_methods=frozenset({"GET"}), raise_on_status=False)
        self._http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s), retries=retries)
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    def get(self, path: str) -> Any:
        """The decoded answer to GET `path` (a path on the server, query included)."""
        try:
            response = self._http.request("GET", self.url + path, headers=self._headers)
        except urllib3.exceptions.MaxRetryError as exc:
            raise RemoteError(f"cannot reach {self.url}: {reason(exc.reason)}", _SERVICE) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise RemoteError(f"cannot reach {self.url}: {reason(exc)}", _SERVICE) from exc
        if response.status >= 500:
            raise RemoteError(f"GET {path}: {problem_message(response)}", _SERVICE)
        if response.status >= 400:
            raise InputError(f"GET {path}: {problem_message(response)}")
        return json.loads(response.data)

    def items(self, path: str) -> Iterator[dict[str, Any]]:
        """Every item of a paged list, following its `next` links."""
        next_path: str | None = path
        while next_path:
            page = self.get(next_path)
            yield from page["items"]
            next_path = page.get("next")


def reason(error: BaseException | None) -> str:
    text = str(error or "no answer")
    return text.rsplit(": ", 1)[-1] if "Failed to establish" in text else text  # "[Errno 111] Connection refused"


def problem_message(response: urllib3.BaseHTTPResponse) -> str:
    """One line from an RFC 9457 problem: its detail (else title), more validation errors, and Retry-After."""
    try:
        problem = json.loads(response.data)
    except ValueError:
        problem = None
    if isinstance(problem, dict) and (problem.get("detail") or problem.get("title")):
        text = str(problem.get("detail") or problem.get("title"))
        errors = problem.get("errors")
        if isinstance(errors, list) and len(errors) > 1:  # the detail names the first
            text += "; " + "; ".join(f"{'.'.join(map(str, e.get('loc', [])))}: {e.get('msg')}"
                                     for e in errors[1:] if isinstance(e, dict))
    else:
        text = response.data[:200].decode(errors="replace") or response.reason or ""
    retry = response.headers.get("Retry-After")
    if retry:
        text += f" (retry after {retry} s)"
    return f"HTTP {response.status}: " + " ".join(text.split())


def _client(args: argparse.Namespace) -> ApiClient:
    if not args.server:
        raise InputError("no server: give --server URL or set TINYSPHERE_URL")
    if not args.token:
        raise InputError("no token: give --token or set TINYSPHERE_TOKEN (a viewer token is enough)")
    return ApiClient(args.server, args.token)


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")


def _table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    cells = [[("" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    for line in [list(columns), *cells]:
        _say("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


def _show(record: dict[str, Any]) -> None:
    width = max(len(key) for key in record)
    for key, value in record.items():
        shown = json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value
        _say(f"{key:>{width}}  {'' if shown is None else shown}")


def devices_list(args: argparse.Namespace) -> int:
    query = "".join(f"&tag={quote(tag)}" for tag in args.tag or [])
    devices = list(_client(args).items(f"/api/v1/devices?limit={PAGE}{query}"))
    if args.json:
        _say(json.dumps(devices, indent=2))
    else:
        _table(devices, ("id", "name", "status", "model_version", "update_state", "last_seen"))
    return 0


def devices_show(args: argparse.Namespace) -> int:
    device = _client(args).get(f"/api/v1/devices/{quote(args.device_id, safe='')}")
    _say(json.dumps(device, indent=2)) if args.json else _show(device)
    return 0


def _rollout_row(rollout: dict[str, Any]) -> dict[str, Any]:
    waves = rollout.get("waves", [])
    return {**rollout, "wave": f"{rollout['current_wave'] + 1}/{len(waves)}",
            "devices": sum(wave["devices"] for wave in waves)}


def rollouts_list(args: argparse.Namespace) -> int:
    query = f"&state={quote(args.state)}" if args.state else ""
    rollouts = list(_client(args).items(f"/api/v1/rollouts?limit={PAGE}{query}"))
    if args.json:
        _say(json.dumps(rollouts, indent=2))
    else:
        _table([_rollout_row(r) for r in rollouts],
               ("id", "model", "bundle_version", "state", "rolled_back", "wave", "devices", "created_at"))
    return 0


def rollouts_show(args: argparse.Namespace) -> int:
    client = _client(args)
    rollout = client.get(f"/api/v1/rollouts/{args.rollout_id}")
    if args.json:
        _say(json.dumps(rollout, indent=2))
        return 0
    _show({key: value for key, value in rollout.items() if key != "waves"})
    for wave in rollout["waves"]:
        states = ", ".join(f"{state} {count}" for state, count in sorted(wave["by_state"].items()))
        _say(f"wave {wave['index'] + 1}: {wave['devices']} device(s){': ' + states if states else ''}")
    return 0


def _event_line(event: dict[str, Any]) -> str:
    wave = f" wave {event['wave'] + 1}" if event.get("wave") is not None else ""
    return f"{event['at']}{wave} {event['decision']}: {event['reason']}"


def rollouts_watch(args: argparse.Namespace) -> int:
    """Follow a rollout until it completes, is aborted or rolled back: a progress bar and each decision once."""
    from tqdm import tqdm

    client = _client(args)
    path = f"/api/v1/rollouts/{args.rollout_id}"
    seen, rollout = 0, client.get(path)  # a wrong id or token ends here, before a bar is drawn
    with tqdm(total=0, unit="device", file=sys.stderr, dynamic_ncols=True) as bar:
        while True:
            events = list(client.items(f"{path}/events?limit={PAGE}"))
            for event in events[seen:]:
                bar.write(_event_line(event), file=sys.stdout)
            seen = len(events)
            waves = rollout["waves"]
            bar.total = sum(wave["devices"] for wave in waves)
            bar.n = sum(wave["by_state"].get(DeviceState.updated, 0) for wave in waves)
            bar.set_description(f"rollout {rollout['id']} {rollout['state']}, wave "
                                f"{rollout['current_wave'] + 1}/{len(waves)}")
            bar.refresh()
            if rollout["state"] in FINAL or rollout["rolled_back"]:
                break
            time.sleep(args.interval)
            rollout = client.get(path)
    ended = "rolled back" if rollout["rolled_back"] else rollout["state"]
    _say(f"rollout {rollout['id']} {ended}")
    return 0 if rollout["state"] == RolloutState.completed and not rollout["rolled_back"] else 1


def _api_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", default=os.environ.get("TINYSPHERE_URL"),
                        help="API base URL (default: $TINYSPHERE_URL)")
    parser.add_argument("--token", default=os.environ.get("TINYSPHERE_TOKEN"),
                        help="API token, viewer role or above (default: $TINYSPHERE_TOKEN)")
    parser.add_argument("--json", action="store_true", help="print the API's JSON instead of a table")


def add_commands(devices: Any, commands: Any) -> None:
    """Register `devices list|show` on the `devices` sub-parsers and `rollouts ...` on the top level."""
    listing = devices.add_parser("list", help="list the devices (all pages)")
    listing.add_argument("--tag", action="append", help="only devices with this tag (repeatable)")
    _api_options(listing)
    listing.set_defaults(run=devices_list)
    show = devices.add_parser("show", help="one device: status, model, update state, last health report")
    show.add_argument("device_id", help="the device's id (see `devices list`)")
    _api_options(show)
    show.set_defaults(run=devices_show)

    rollouts = commands.add_parser("rollouts", help="staged rollouts, read over the API")
    actions = rollouts.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="list the rollouts, newest first (all pages)")
    listing.add_argument("--state", help=f"only rollouts in this state ({', '.join(RolloutState)})")
    _api_options(listing)
    listing.set_defaults(run=rollouts_list)
    show = actions.add_parser("show", help="one rollout and its waves, counted by device state")
    show.add_argument("rollout_id", type=int, help="the rollout's id (see `rollouts list`)")
    _api_options(show)
    show.set_defaults(run=rollouts_show)
    watch = actions.add_parser("watch", help="follow a rollout: live progress and each decision, until it ends "
                               "(exit status 0 completed, 1 aborted or rolled back)")
    watch.add_argument("rollout_id", type=int, help="the rollout's id (see `rollouts list`)")
    watch.add_argument("--interval", type=float, default=2.0, help="seconds between two polls (default 2)")
    _api_options(watch)
    watch.set_defaults(run=rollouts_watch)
