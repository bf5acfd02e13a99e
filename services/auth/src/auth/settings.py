"""Settings of the auth service (`AUTH_*`, plus the shared names of the REST contract)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from meshplate_core.settings import GrpcServiceSettings, RedisUrl


class Settings(GrpcServiceSettings):
    """Tokens and keys, the database of refresh families, revocation events, the users service."""

    model_config = SettingsConfigDict(env_prefix="AUTH_")

    grpc_port: int = Field(default=50051, ge=0, le=65535)
    metrics_port: int = Field(default=9151, ge=0, le=65535)
    database_url: str = "sqlite:///var/auth.db"
    redis_url: RedisUrl = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("AUTH_REDIS_URL", "REDIS_URL"),
    )
    users_addr: str = "127.0.0.1:50052"
    rpc_timeout_s: float = Field(default=5.0, gt=0)
    access_token_expire_minutes: int = Field(
        default=30, ge=1, validation_alias="ACCESS_TOKEN_EXPIRE_MINUTES"
    )
    refresh_token_expire_days: int = Field(
        default=7, ge=1, validation_alias="REFRESH_TOKEN_EXPIRE_DAYS"
    )
    issuer: str = "meshplate-auth"
    audience: str = "meshplate"
    # Ed25519 private keys in PEM, one or more; the first signs, all are published (rotation).
    signing_keys: SecretStr | None = None
    # Or a file holding them. With neither, a local run generates one into `generated_key_file`.
    signing_key_file: Path | None = None
    generated_key_file: Path = Path("var/auth-signing-key.pem")
