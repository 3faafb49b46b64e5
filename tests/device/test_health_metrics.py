"""The device's `/metrics`, parsed with prometheus_client's own parser: HELP and TYPE lines, counters in `_total`."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from device.health import HealthServer

SNAPSHOT = {"status": "ok", "model": "digits", "frames": 7, "skipped": 1, "latency_ms_p95": 2.5, "outbox_depth": 4,
            "sync": True, "sync_delivered": 12, "bundle_error": ""}


def test_metrics_parse_with_help_type_and_total_counters() -> None:
    server = HealthServer(lambda: SNAPSHOT, 0).start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as resp:
            assert resp.headers["Content-Type"].startswith("text/plain")
            text = resp.read().decode()
    finally:
        server.close()
    assert "# HELP tinylcm_frames_total " in text and "# TYPE tinylcm_frames_total counter" in text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert {name: family.type for name, family in families.items()} == {
        "tinylcm_frames": "counter", "tinylcm_skipped": "counter", "tinylcm_sync_delivered": "counter",
        "tinylcm_latency_ms_p95": "gauge", "tinylcm_outbox_depth": "gauge", "tinylcm_sync": "gauge",
        "tinylcm_scrape_time_seconds": "gauge"}
    samples = {sample.name: sample.value for family in families.values() for sample in family.samples}
    assert samples["tinylcm_frames_total"] == 7 and samples["tinylcm_sync_delivered_total"] == 12
    assert samples["tinylcm_latency_ms_p95"] == 2.5 and samples["tinylcm_sync"] == 1
    assert all(family.documentation for family in families.values())
