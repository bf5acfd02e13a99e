"""Every service's own settings refuse a placeholder secret in production (the rule itself is
meshplate_core.settings'; here, that each real secret is a field it sees)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings

from auth.settings import Settings as AuthSettings
from meshplate_core.settings import ServiceSettings
from users.settings import Settings as UsersSettings
from worker.settings import Settings as WorkerSettings

SECRETS: list[tuple[type[ServiceSettings], str]] = [
    (AuthSettings, "signing_keys"),
    (UsersSettings, "admin_password"),
    (WorkerSettings, "smtp_password"),
]


def _settings(cls: type[BaseSettings], **values: Any) -> BaseSettings:
    return cls(_env_file=None, **values)


@pytest.mark.parametrize(("cls", "field"), SECRETS)
@pytest.mark.parametrize("placeholder", ["changethis", "", "CHANGEME"])
def test_production_refuses_the_placeholder(
    cls: type[ServiceSettings], field: str, placeholder: str
) -> None:
    with pytest.raises(ValidationError, match=f"{field} has a placeholder value"):
        _settings(cls, environment="production", **{field: SecretStr(placeholder)})


@pytest.mark.parametrize(("cls", "field"), SECRETS)
def test_elsewhere_the_placeholder_runs(cls: type[ServiceSettings], field: str) -> None:
    settings = _settings(cls, environment="local", **{field: SecretStr("changethis")})

    assert isinstance(getattr(settings, field), SecretStr)


def test_users_default_admin_password_is_a_placeholder_production_refuses() -> None:
    with pytest.raises(ValidationError, match="admin_password has a placeholder value"):
        _settings(UsersSettings, environment="production")
