"""Settings of the worker (`WORKER_*`, plus the shared `REDIS_URL` and `JOB_TTL_S`)."""

from __future__ import annotations

import os
import socket
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from meshplate_core.settings import RedisUrl, ServiceSettings


def _default_consumer() -> str:
    # The pod name in Kubernetes (HOSTNAME), made unique per process for several on one host.
    return f"{socket.gethostname()}-{os.getpid()}"


class Settings(ServiceSettings):
    """The streams it consumes, how it retries, the SMTP relay and the services it calls."""

    model_config = SettingsConfigDict(env_prefix="WORKER_")

    redis_url: RedisUrl = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("WORKER_REDIS_URL", "REDIS_URL"),
    )
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8001, ge=0, le=65535)
    # This process's name in every consumer group.
    consumer: str = Field(default_factory=_default_consumer, min_length=1)
    # How long job records stay readable after their last change.
    job_ttl_s: int = Field(
        default=86400, ge=1, validation_alias=AliasChoices("WORKER_JOB_TTL_S", "JOB_TTL_S")
    )
    # Jobs of one kind run at the same time in this process, and entries taken per read. Each
    # read and each round trip serves a batch, so quick jobs (the sample task, e-mails) want many.
    concurrency: int = Field(default=32, ge=1, le=1000)
    # Deliveries of one job before it is dead (moved to the dead-letter stream).
    max_deliveries: int = Field(default=5, ge=1)
    # Back-off before retry n: retry_backoff_s * 2**(n-1), at most retry_backoff_max_s.
    retry_backoff_s: float = Field(default=10.0, gt=0)
    retry_backoff_max_s: float = Field(default=600.0, gt=0)
    # An entry pending this long without a heartbeat is claimed by another consumer (its
    # consumer died); running jobs renew it every third of this.
    claim_idle_s: float = Field(default=30.0, gt=0)
    # How often the claiming subscriber looks for such entries.
    claim_interval_s: float = Field(default=1.0, gt=0)
    # The sample task's work (the boilerplate's task sleeps 5 seconds).
    sample_task_s: float = Field(default=5.0, ge=0)
    # Schedules (seconds between runs; 0 switches one off).
    purge_interval_s: float = Field(default=3600.0, ge=0)
    report_interval_s: float = Field(default=86400.0, ge=0)
    # How often the job streams are trimmed of entries every group has finished with, and the
    # consumers of gone processes forgotten (0: never).
    trim_interval_s: float = Field(default=60.0, ge=0)
    # The services the jobs call, and the deadline of each call.
    auth_addr: str = "127.0.0.1:50051"
    users_addr: str = "127.0.0.1:50052"
    rpc_timeout_s: float = Field(default=10.0, gt=0)
    # The SMTP relay of the welcome e-mail: "none", "starttls" or "tls" (implicit TLS, port 465).
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=1025, ge=1, le=65535)
    smtp_tls: Literal["none", "starttls", "tls"] = "none"
    # Log in with these when set (None: the relay takes mail without authentication).
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_sender: str = "Meshplate <no-reply@meshplate.local>"
    smtp_timeout_s: float = Field(default=10.0, gt=0)
    # Deadline of every Redis command of the deliveries (and of connecting).
    redis_timeout_s: float = Field(default=5.0, gt=0)
    # Deadline of the Redis ping behind /health/ready.
    health_timeout_s: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _backoff_is_bounded(self) -> Settings:
        if self.retry_backoff_max_s < self.retry_backoff_s:
            raise ValueError("WORKER_RETRY_BACKOFF_MAX_S must be at least WORKER_RETRY_BACKOFF_S")
        return self
