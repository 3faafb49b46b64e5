"""`tinylcm run` on a 512 MB board: what the frame loop, the health server and a device waiting to be provisioned
never use stays unloaded (prometheus_client until /metrics is scraped, aiohttp until there is a server to talk
to, the updater's TUF client and urllib3, python-json-logger without --log-format json)."""

from __future__ import annotations

import json

from tests.utils.bundles import FACTORY
from tests.utils.child import last_json_line

UNUSED = ("prometheus_client", "aiohttp", "urllib3", "tuf", "cryptography", "pythonjsonlogger")


def test_a_running_unprovisioned_appliance_leaves_what_it_does_not_use_unloaded(tmp_path) -> None:
    config = tmp_path / "device.json"
    config.write_text(json.dumps({
        "device": {"data_dir": str(tmp_path), "health_port": 0},
        "camera": {"source": "digits", "fps": 50},
        "feature_extractor": {"bundle": str(FACTORY)},
    }))
    code = (
        "import json, sys, threading, time, urllib.request\n"
        "from device.appliance import Appliance\n"
        "from device.cli import main\n"
        "from device.health import HealthServer\n"
        "seen = {}\n"
        "started = HealthServer.start\n"
        "def start(self):\n"
        "    seen['port'] = self.port\n"
        "    return started(self)\n"
        "HealthServer.start = start\n"
        "built = Appliance.__init__\n"
        "def init(self, *a, **kw):\n"
        "    built(self, *a, **kw)\n"
        "    threading.Thread(target=watch, args=(self,), daemon=True).start()\n"
        "Appliance.__init__ = init\n"
        "def loaded():\n"
        f"    return sorted(m for m in {UNUSED!r} if m in sys.modules)\n"
        "def watch(app):\n"
        "    while app.runner.stats.frames < 30 or app.connection.provisioner is None:\n"
        "        time.sleep(0.05)\n"
        "    before = loaded()\n"
        "    url = f\"http://127.0.0.1:{seen['port']}\"\n"
        "    healthz = json.loads(urllib.request.urlopen(url + '/healthz', timeout=10).read())\n"
        "    after_healthz = loaded()\n"
        "    metrics = urllib.request.urlopen(url + '/metrics', timeout=10).read().decode()\n"
        "    print(json.dumps({'before': before, 'after_healthz': after_healthz, 'after_metrics': loaded(),\n"
        "                      'frames': healthz['frames'], 'counter': 'tinylcm_frames_total' in metrics}))\n"
        "    app.runner.stop.set()\n"
        f"sys.exit(main(['run', '--config', {str(config)!r}]))\n"
    )
    seen = last_json_line(code, timeout_s=180)
    assert seen["frames"] >= 30 and seen["counter"]
    assert seen["before"] == [] and seen["after_healthz"] == []  # urllib.request is this test's, not the service's
    assert seen["after_metrics"] == ["prometheus_client"]  # the first scrape loads it, and /metrics answers
