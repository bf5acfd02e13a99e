from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError
from pydantic_settings import SettingsConfigDict

from meshplate_core.settings import ServiceSettings


class DemoSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DEMO_")

    signing_key: SecretStr = SecretStr("changethis")
    port: int = 1


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("ENVIRONMENT", "DEMO_SIGNING_KEY", "DEMO_PORT", "SECRETS_DIR", "LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("placeholder", ["changethis", "", "  secret ", "CHANGEME"])
def test_production_refuses_a_placeholder_secret(placeholder: str) -> None:
    with pytest.raises(ValidationError, match="signing_key has a placeholder value"):
        DemoSettings(environment="production", signing_key=SecretStr(placeholder))


def test_production_accepts_a_real_secret() -> None:
    settings = DemoSettings(environment="production", signing_key=SecretStr("k3y-from-a-vault"))

    assert settings.signing_key.get_secret_value() == "k3y-from-a-vault"


@pytest.mark.parametrize("environment", ["local", "staging"])
def test_other_environments_run_with_placeholders(environment: str) -> None:
    settings = DemoSettings(environment=environment)

    assert settings.environment == environment


def test_prefixed_variables_configure_one_service_and_shared_names_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEMO_PORT", "7")
    monkeypatch.setenv("ENVIRONMENT", "staging")
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")

    settings = DemoSettings()

    assert (settings.port, settings.environment, settings.log_level) == (7, "staging", "DEBUG")


def test_dotenv_in_the_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DEMO_PORT=9\nENVIRONMENT=staging\n")

    settings = DemoSettings()

    assert (settings.port, settings.environment) == (9, "staging")


def test_environment_beats_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("DEMO_PORT=9\n")
    monkeypatch.setenv("DEMO_PORT", "8")

    assert DemoSettings().port == 8


def test_secret_files_supply_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "demo_signing_key").write_text("from-a-mounted-file")
    monkeypatch.setenv("SECRETS_DIR", str(secrets))

    settings = DemoSettings(environment="production")

    assert settings.signing_key.get_secret_value() == "from-a-mounted-file"


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "Infinity"])
def test_a_float_setting_is_never_infinite_or_nan(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An infinite grace or deadline would be none at all; a NaN passes every bound's comparison.
    monkeypatch.setenv("DEMO_SHUTDOWN_GRACE_S", value)

    with pytest.raises(ValidationError, match="finite number"):
        DemoSettings()


def test_unknown_environment_is_refused() -> None:
    with pytest.raises(ValidationError):
        DemoSettings(environment="prod")
