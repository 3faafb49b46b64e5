"""Settings: one object, placeholder secrets refused outside development."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from server.config import Settings
from server.db.engine import sqlalchemy_url


def test_defaults_are_embedded_and_need_no_secrets() -> None:
    settings = Settings()
    assert settings.embedded and settings.s3_endpoint is None


def test_production_means_the_production_environment_on_an_external_database() -> None:
    external = "postgresql://tinysphere@db/tinysphere"
    assert Settings(database_url=external).production
    assert not Settings().production  # zero configuration
    assert not Settings(environment="development", database_url=external).production


@pytest.mark.parametrize("secret", ["", "changethis", "minioadmin"])
def test_placeholder_s3_secret_is_refused_in_production(secret: str) -> None:
    with pytest.raises(ValidationError, match="S3_SECRET_KEY"):
        Settings(s3_endpoint="http://minio:9000", s3_access_key="tinysphere", s3_secret_key=secret)  # type: ignore[arg-type]


def test_placeholder_database_password_is_refused_in_production() -> None:
    with pytest.raises(ValidationError, match="DATABASE_URL"):
        Settings(database_url="postgresql://tinysphere:changethis@db/tinysphere")


def test_development_accepts_placeholders() -> None:
    settings = Settings(environment="development", s3_endpoint="http://minio:9000", s3_access_key="minioadmin",
                        s3_secret_key="minioadmin")  # type: ignore[arg-type]
    assert settings.s3_access_key == "minioadmin"


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINYSPHERE_MAX_PACKAGE_BYTES", "4096")
    assert Settings().max_package_bytes == 4096


def test_only_postgresql_urls_are_accepted() -> None:
    assert sqlalchemy_url("postgresql://u@h/db").startswith("postgresql+psycopg://")
    with pytest.raises(ValueError, match="only PostgreSQL"):
        sqlalchemy_url("sqlite:///x.db")
