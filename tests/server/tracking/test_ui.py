"""`tinysphere mlflow-ui`: MLflow's own UI on the server's tracking store."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
import uuid

from mlflow.tracking import MlflowClient
from sqlalchemy.engine import make_url

from server.db.engine import sqlalchemy_url
from server.tracking import ui as mlflow_ui
from tests.server import services
from tests.utils.net import free_port


def test_the_ui_serves_the_servers_store(test_env: dict[str, str]) -> None:
    """The UI started on the tracking store shows what the server wrote there."""
    name = f"ui-{uuid.uuid4().hex[:8]}"
    MlflowClient(test_env["TINYMLOPS_TEST_MLFLOW_URI"]).create_experiment(name)
    admin = make_url(test_env["TINYMLOPS_TEST_DATABASE_URL"])
    store = sqlalchemy_url(admin.set(database=services.MLFLOW_DB).render_as_string(False), "psycopg2")
    port = free_port()
    argv = mlflow_ui.command(store, "s3://mlflow-test/artifacts", port)
    assert argv[argv.index("--host") + 1] == "127.0.0.1" and argv[argv.index("--backend-store-uri") + 1] == store
    process = mlflow_ui.start(store, "s3://mlflow-test/artifacts", port)
    try:
        url = f"http://127.0.0.1:{port}"
        assert mlflow_ui.wait_ready(url, process)
        query = urllib.parse.urlencode({"experiment_name": name})
        with urllib.request.urlopen(f"{url}/api/2.0/mlflow/experiments/get-by-name?{query}", timeout=10) as answer:
            assert json.load(answer)["experiment"]["name"] == name
        with urllib.request.urlopen(url, timeout=10) as page:
            assert b"MLflow" in page.read()
    finally:
        mlflow_ui.stop(process)
    assert process.returncode is not None


def test_an_mlflow_server_is_named_not_started() -> None:
    said: list[str] = []
    assert mlflow_ui.run("http://mlflow.example:5000", None, say=said.append) == 0
    assert said == ["MLflow UI: http://mlflow.example:5000 (the server's MLflow tracking server)"]


def test_a_database_uri_is_shown_without_its_password() -> None:
    shown = mlflow_ui.display_uri("postgresql+psycopg2://postgres:s3cret@127.0.0.1:5433/mlflow")
    assert shown == "postgresql+psycopg2://postgres:***@127.0.0.1:5433/mlflow"
    assert mlflow_ui.display_uri("http://mlflow:5000") == "http://mlflow:5000"
