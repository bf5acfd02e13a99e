"""Settings of the ratelimit service (`RATELIMIT_*`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from meshplate_core.settings import GrpcServiceSettings


class Settings(GrpcServiceSettings):
    """Rules and counters: the database that keeps the rules."""

    model_config = SettingsConfigDict(env_prefix="RATELIMIT_")

    grpc_port: int = Field(default=50053, ge=0, le=65535)
    database_url: str = "sqlite:///var/ratelimit.db"
