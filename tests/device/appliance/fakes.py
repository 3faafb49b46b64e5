"""Stand-ins for the runner and the outbox the appliance's parts are built on: only what the parts read."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from device.runner import Stats


@dataclass
class FakeOutbox:
    """Appends kept in memory; `flush` answers `flushes` (True: everything committed)."""

    records: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    flushes: bool = True
    lost_in_crash: int = 0

    def append(self, kind: str, data: dict[str, Any]) -> None:
        self.records.append((kind, data))

    def flush(self, timeout: float) -> bool:
        return self.flushes

    def depth(self) -> int:
        return len(self.records)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [data for k, data in self.records if k == kind]


def fake_runner(version: str = "1.0.0", monitor: Any = None, adapter: Any = None) -> SimpleNamespace:
    """A runner whose pipeline runs bundle digits `version`; `noticed` counts `notice_classes()` calls."""
    pipeline = SimpleNamespace(bundle=SimpleNamespace(name="digits", version=version), monitor=monitor,
                               adapter=adapter, noticed=0)

    def notice_classes() -> None:
        pipeline.noticed += 1

    pipeline.notice_classes = notice_classes
    return SimpleNamespace(pipeline=pipeline, stats=Stats(window=10))
