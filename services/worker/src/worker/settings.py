"""Settings of the worker (`WORKER_*`, plus the shared `REDIS_URL`)."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from meshplate_core.settings import ServiceSettings


class Settings(ServiceSettings):
    """The Redis streams it consumes and the HTTP port of its health endpoint."""

    model_config = SettingsConfigDict(env_prefix="WORKER_")

    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("WORKER_REDIS_URL", "REDIS_URL"),
    )
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8001, ge=0, le=65535)
    # How long job records stay readable after their last change.
    job_ttl_s: int = Field(
        default=86400, ge=1, validation_alias=AliasChoices("WORKER_JOB_TTL_S", "JOB_TTL_S")
    )
    # Deadline of the Redis ping behind /health.
    health_timeout_s: float = Field(default=1.0, gt=0)
