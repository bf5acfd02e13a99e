"""When the gateway serves the admin panel, and the key that signs its cookies."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError

from gateway.admin.secret import signing_key
from gateway.app import create_app
from gateway.settings import Settings
from meshplate_core.settings import Environment

from .conftest import settings_for


def _settings(
    environment: Environment,
    *,
    admin_enabled: bool | None = None,
    admin_secret_key: SecretStr | None = None,
    admin_generated_key_file: Path = Path("var/admin-secret-key"),
) -> Settings:
    return Settings(
        environment=environment,
        admin_enabled=admin_enabled,
        admin_secret_key=admin_secret_key,
        admin_generated_key_file=admin_generated_key_file,
        _env_file=None,
    )


@pytest.mark.parametrize(
    ("environment", "enabled", "on"),
    [
        ("local", None, True),
        ("staging", None, True),
        ("production", None, False),
        ("production", True, True),
        ("local", False, False),
    ],
)
def test_the_panel_is_on_outside_production_unless_set(
    environment: Environment, enabled: bool | None, on: bool
) -> None:
    settings = _settings(
        environment,
        admin_enabled=enabled,
        admin_secret_key=SecretStr("a-real-key-of-this-deployment"),
    )

    assert settings.admin_on is on


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_outside_a_local_run_the_panel_needs_its_key(environment: Environment) -> None:
    with pytest.raises(ValidationError, match="ADMIN_SECRET_KEY"):
        _settings(environment, admin_enabled=True)


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_outside_a_local_run_a_placeholder_key_is_refused(environment: Environment) -> None:
    with pytest.raises(ValidationError, match=r"placeholder|real ADMIN_SECRET_KEY"):
        _settings(environment, admin_enabled=True, admin_secret_key=SecretStr("changethis"))


def test_production_without_the_panel_needs_no_key() -> None:
    assert not _settings("production").admin_on


def test_a_local_run_shares_one_generated_key_between_its_processes(tmp_path: Path) -> None:
    settings = _settings("local", admin_generated_key_file=tmp_path / "var" / "admin-key")

    first, second = signing_key(settings), signing_key(settings)

    assert first == second
    assert len(first) >= 32
    assert (tmp_path / "var" / "admin-key").stat().st_mode & 0o777 == 0o600
    assert [path.name for path in (tmp_path / "var").iterdir()] == ["admin-key"]


def test_without_the_panel_admin_is_not_found(redis_url: str) -> None:
    settings = settings_for("local", redis_url).model_copy(update={"admin_enabled": False})
    with TestClient(create_app(settings)) as client:
        answer = client.get("/admin/login")

    assert answer.status_code == 404
