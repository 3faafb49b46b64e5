"""The MLflow client settings the bridge applies: no usage telemetry to MLflow's vendor unless asked for."""

from __future__ import annotations

import os

import pytest
from mlflow.environment_variables import MLFLOW_DISABLE_TELEMETRY

from server.tracking.bridge import configure_http


def test_telemetry_is_off_unless_the_operator_turned_it_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_DISABLE_TELEMETRY", raising=False)
    configure_http(30, 2)
    assert MLFLOW_DISABLE_TELEMETRY.get() is True  # as MLflow's client reads it
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "false")
    configure_http(30, 2)
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "false" and MLFLOW_DISABLE_TELEMETRY.get() is False
