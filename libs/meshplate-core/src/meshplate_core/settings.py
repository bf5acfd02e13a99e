"""Typed settings shared by every process, read from the environment and the root `.env`.

Each service subclasses `ServiceSettings` (or `GrpcServiceSettings`) with its own `env_prefix`, so
`USERS_GRPC_PORT` configures the users service only. The names clients and operators share across
services (`ENVIRONMENT`, `LOG_LEVEL`, `REDIS_URL`, ...) are read without a prefix. Secrets may also come
from files: with `SECRETS_DIR` set, a file named after a setting's variable (`AUTH_SIGNING_KEY`)
supplies its value, as Kubernetes and Docker secret mounts lay them out.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)

from meshplate_core.mtls import CERT_FILE, Tls, TlsFilesError
from meshplate_core.redis_client import checked

Environment = Literal["local", "staging", "production"]
# A Redis server's URL or a Redis Cluster's (meshplate_core.redis_client), checked at start.
RedisUrl = Annotated[str, AfterValidator(checked)]

# Values that mark a secret as "not set yet": production refuses to start with any of them.
PLACEHOLDER_SECRETS = frozenset({"", "changethis", "changeme", "change-me", "secret", "password"})


class PlaceholderSecretError(ValueError):
    """A secret still has a placeholder value where the environment forbids it."""


class InsecureSettingError(ValueError):
    """A setting turns a protection off where the environment forbids it."""


class ServiceSettings(BaseSettings):
    """What every Meshplate process has: environment, logging, a shutdown grace period, and its
    workload's TLS for gRPC."""

    # No float setting is infinite or NaN: an `inf` deadline or timeout would be no deadline.
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_by_name=True,
        allow_inf_nan=False,
    )

    environment: Environment = Field(default="local", validation_alias="ENVIRONMENT")
    log_level: str = Field(default="INFO", validation_alias="LOG_LEVEL")
    log_json: bool = Field(default=True, validation_alias="LOG_JSON")
    # After SIGTERM: report not ready for `shutdown_drain_s` (so load balancers stop sending new
    # work) while still serving, then give in-flight requests `shutdown_grace_s` to finish.
    shutdown_drain_s: float = Field(default=0.0, ge=0)
    shutdown_grace_s: float = Field(default=10.0, gt=0)
    # Mutual TLS on every gRPC hop (meshplate_core.mtls): this workload's folder holding ca.crt,
    # tls.crt and tls.key (a Kubernetes TLS secret's layout). Unset: SECRETS_DIR, when it holds
    # them.
    tls_dir: Path | None = Field(default=None, validation_alias="TLS_DIR")
    # Plaintext gRPC, where no caller is authenticated nor checked: an explicit choice for local
    # runs; production refuses it.
    grpc_plaintext: bool = Field(default=False, validation_alias="GRPC_PLAINTEXT")

    def tls(self) -> Tls | None:
        """This workload's TLS folder, or None for plaintext (GRPC_PLAINTEXT); TlsFilesError
        when neither is set."""
        if self.grpc_plaintext:
            return None
        folder = self.tls_dir
        secrets = os.environ.get("SECRETS_DIR")
        if folder is None and secrets and (Path(secrets) / CERT_FILE).is_file():
            folder = Path(secrets)
        if folder is None:
            raise TlsFilesError(
                "gRPC needs mutual TLS: set TLS_DIR to a folder with ca.crt, tls.crt and tls.key "
                "(`python -m meshplate_core.pki var/tls <name>` makes one), or GRPC_PLAINTEXT=true "
                "for a local run"
            )
        tls = Tls(folder)
        tls.read()
        return tls

    @model_validator(mode="after")
    def _refuse_what_production_forbids(self) -> Self:
        if self.environment != "production":
            return self
        if self.grpc_plaintext:
            raise InsecureSettingError("GRPC_PLAINTEXT is refused for ENVIRONMENT=production")
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr) and value.get_secret_value().strip().lower() in (
                PLACEHOLDER_SECRETS
            ):
                raise PlaceholderSecretError(
                    f"{name} has a placeholder value; set a real secret for ENVIRONMENT=production"
                )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        secrets_dir = os.environ.get("SECRETS_DIR")
        files = (
            (SecretsSettingsSource(settings_cls, secrets_dir=secrets_dir),) if secrets_dir else ()
        )
        return (init_settings, env_settings, dotenv_settings, *files)


class GrpcServiceSettings(ServiceSettings):
    """A gRPC service that owns a database (PostgreSQL, or SQLite for local runs)."""

    grpc_host: str = "127.0.0.1"
    grpc_port: int = Field(default=0, ge=0, le=65535)
    # Prometheus' /metrics (plain HTTP), each service on a port of its own.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=0, ge=0, le=65535)
    # Clients are sent GOAWAY after this long, so they re-resolve and spread over new replicas.
    max_connection_age_s: float = Field(default=300.0, gt=0)
    # How often the database is pinged to decide between SERVING and NOT_SERVING.
    health_interval_s: float = Field(default=2.0, gt=0)
    database_url: str = ""
    database_pool_size: int = Field(default=10, ge=1)
    # How long `python -m <service> migrate` waits for a database that does not answer yet
    # (started beside it: compose, a fresh cluster) before it fails.
    database_wait_s: float = Field(default=60.0, ge=0)
    # Apply pending migrations before serving (one replica at a time on PostgreSQL).
    migrate_on_start: bool = True
    # Callers added to the service's own table (meshplate_core.callers): workload name -> the
    # RPCs it may call, e.g. {"billing": ["GetUser", "ListUsers"]}.
    grants: dict[str, list[str]] = Field(default_factory=dict)
