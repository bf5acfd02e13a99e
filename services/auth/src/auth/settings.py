"""Settings of the auth service (`AUTH_*`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from meshplate_core.settings import GrpcServiceSettings


class Settings(GrpcServiceSettings):
    """Tokens, signing keys and revocations: the database that keeps refresh families."""

    model_config = SettingsConfigDict(env_prefix="AUTH_")

    grpc_port: int = Field(default=50051, ge=0, le=65535)
    database_url: str = "sqlite:///var/auth.db"
