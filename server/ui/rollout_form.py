"""The rollout form: from what an operator typed to the API's `RolloutCreate`, with an error per field."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from server.schemas.rollouts import RolloutCreate

GATES = (("max_drift_alarm_rate", "Max drift-alarm rate", "alarms per 1000 frames; blank skips the gate"),
         ("max_error_rate", "Max error rate", "fraction of frames that failed; blank skips"),
         ("max_p95_latency_ratio", "Max p95 latency ratio", "vs the previous model, e.g. 1.5; blank skips"),
         ("min_healthy_fraction", "Min healthy fraction", "0 to 1 of the wave's devices; blank skips"))
FIELDS = ("model", "bundle_version", "selector", "tags", "device_ids", "waves", "wave_timeout_s",
          *(name for name, _, _ in GATES))
LABELS = {"model": "Model", "bundle_version": "Bundle version", "selector": "Devices", "tags": "Tags",
          "device_ids": "Device ids", "waves": "Waves", "wave_timeout_s": "Wave timeout",
          **{name: text for name, text, _ in GATES}}
DEFAULTS = {"selector": "fleet", "waves": "1 300\n50% 600\n100% 600", "wave_timeout_s": "3600",
            "min_healthy_fraction": "0.9"}
_WAVE = re.compile(r"^(?P<size>\d+(?:\.\d+)?%?)\s+(?P<soak>\d+(?:\.\d+)?)$")


@dataclass
class RolloutForm:
    """What was typed (to show again) and what is wrong with it, by field name."""

    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)

    def error(self, name: str, message: str) -> None:
        """Keep the first error of a field."""
        self.errors.setdefault(name, message)


def blank() -> RolloutForm:
    """A new form with sensible defaults."""
    return RolloutForm({name: DEFAULTS.get(name, "") for name in FIELDS})


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[\s,]+", text.strip()) if w]


def _waves(form: RolloutForm) -> list[dict[str, Any]]:
    waves = []
    for number, line in enumerate(form.values["waves"].strip().splitlines(), start=1):
        match = _WAVE.match(line.strip())
        if match is None:
            form.error("waves", f"line {number}: write a size (a count like 2, or a share like 50%) and a soak "
                                "time in seconds, e.g. '50% 600'")
            return []
        size, soak = match["size"], float(match["soak"])
        waves.append({"fraction": float(size[:-1]) / 100, "soak_s": soak} if size.endswith("%")
                     else {"count": int(float(size)), "soak_s": soak})
    return waves


def _number(form: RolloutForm, name: str) -> float | None:
    text = form.values[name].strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        form.error(name, "must be a number")
        return None


def _selector(form: RolloutForm) -> dict[str, Any]:
    kind = form.values["selector"]
    if kind == "tags":
        return {"tags": _words(form.values["tags"])}
    if kind == "devices":
        return {"device_ids": _words(form.values["device_ids"])}
    return {"fleet": True}


def _field_of(loc: tuple[int | str, ...], selector: str) -> str:
    if loc[:1] == ("gates",) and len(loc) > 1:
        return str(loc[1])
    if loc[:1] == ("selector",):
        return {"tags": "tags", "devices": "device_ids"}.get(selector, "selector")
    return str(loc[0]) if loc else "model"


def _message(error: dict[str, Any]) -> str:
    text = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "string_too_short" and error.get("ctx", {}).get("min_length") == 1:
        text = "required"
    elif error["type"] == "too_short":
        text = "give at least one"
    loc = error["loc"]
    if loc[:1] == ("waves",) and len(loc) > 1 and isinstance(loc[1], int):
        return f"wave {loc[1] + 1}: {text}"
    return text


def parse(values: dict[str, str]) -> tuple[RolloutForm, RolloutCreate | None]:
    """Check every field; the API body when all are valid."""
    form = RolloutForm({name: values.get(name, "") for name in FIELDS})
    gates = {name: _number(form, name) for name, _, _ in GATES}
    timeout = form.values["wave_timeout_s"].strip()
    if timeout and not timeout.isdigit():
        form.error("wave_timeout_s", "must be a whole number of seconds")
    if not form.values["waves"].strip():
        form.error("waves", "give at least one wave")
    body = {"model": form.values["model"].strip(), "bundle_version": form.values["bundle_version"].strip(),
            "selector": _selector(form), "waves": _waves(form), "gates": gates,
            "wave_timeout_s": int(timeout) if timeout.isdigit() else 3600}
    try:
        create = RolloutCreate.model_validate(body)
    except ValidationError as exc:
        for error in exc.errors():
            form.error(_field_of(tuple(error["loc"]), form.values["selector"]), _message(dict(error)))
        return form, None
    return form, (None if form.errors else create)
