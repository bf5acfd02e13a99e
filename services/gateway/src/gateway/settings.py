"""Settings of the gateway (`GATEWAY_*`, plus the shared names of the REST contract)."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from meshplate_core.settings import PLACEHOLDER_SECRETS, RedisUrl, ServiceSettings


class Settings(ServiceSettings):
    """The HTTP listener, the peers it calls and how long it waits for them."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # Processes serving the port (one Python process serves one core). In Kubernetes keep 1 and
    # scale with replicas.
    workers: int = Field(default=1, ge=1, le=64)
    # HTTPS with mutual TLS on the port (the workload's TLS_DIR certificate; callers must show
    # one of the CA: Envoy, and the pod's own probes), as in Kubernetes and compose; off for a
    # local run, whose Envoy and curl reach the gateway over plain HTTP. One process only.
    https: bool = False
    auth_addr: str = "127.0.0.1:50051"
    users_addr: str = "127.0.0.1:50052"
    ratelimit_addr: str = "127.0.0.1:50053"
    redis_url: RedisUrl = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("GATEWAY_REDIS_URL", "REDIS_URL"),
    )
    # Deadline of every call to a service; a slower answer becomes 504.
    rpc_timeout_s: float = Field(default=5.0, gt=0)
    # Deadline of each dependency check of /health/ready.
    health_timeout_s: float = Field(default=1.0, gt=0)
    # Peers whose X-Forwarded-For is believed (addresses or CIDR blocks, comma-separated JSON list).
    trusted_proxies: list[str] = Field(default_factory=list)
    # With the ratelimit service unreachable: admit (true, logged) or answer 503 (false).
    ratelimit_fail_open: bool = True
    # How long job records stay readable (must match the worker's WORKER_JOB_TTL_S).
    job_ttl_s: int = Field(
        default=86400, ge=1, validation_alias=AliasChoices("GATEWAY_JOB_TTL_S", "JOB_TTL_S")
    )
    # Largest request body accepted (413 beyond it): Envoy's limit, for a gateway reached directly.
    max_body_bytes: int = Field(default=1_048_576, ge=1)
    # max-age of anonymous reads of public resources.
    client_cache_max_age: int = Field(default=60, ge=0, validation_alias="CLIENT_CACHE_MAX_AGE")
    # Must match auth's AUTH_ISSUER / AUTH_AUDIENCE.
    token_issuer: str = "meshplate-auth"
    token_audience: str = "meshplate"
    # The refresh cookie lives as long as the refresh token.
    refresh_token_expire_days: int = Field(
        default=7, ge=1, validation_alias="REFRESH_TOKEN_EXPIRE_DAYS"
    )
    # How long the read model keeps a copy of a users answer at most (0: no read model). Copies
    # are dropped at once when users publishes a change; this bounds only what a lost event leaves.
    read_model_ttl_s: float = Field(default=60.0, ge=0)
    # How long start-up waits for auth's keys and the revocation replay before serving anyway
    # (authenticated requests are refused until both are there).
    startup_wait_s: float = Field(default=10.0, ge=0)

    # The admin panel at /admin (docs/admin.md): on unless ENVIRONMENT=production, where it is
    # on only when asked for.
    admin_enabled: bool | None = Field(default=None, validation_alias="ADMIN_ENABLED")
    # How long an admin session lives without a request.
    admin_session_idle_s: int = Field(
        default=1800, ge=1, le=86400, validation_alias="ADMIN_SESSION_IDLE_S"
    )
    # How long an admin session lives at most, requests or not.
    admin_session_max_s: int = Field(
        default=43200, ge=1, le=604800, validation_alias="ADMIN_SESSION_MAX_S"
    )
    # Signs the panel's CSRF and flash cookies: the same for every gateway process. Unset in a
    # local run: one generated under var/ (admin_generated_key_file) and shared by its processes;
    # required anywhere else the panel is on.
    admin_secret_key: SecretStr | None = Field(default=None, validation_alias="ADMIN_SECRET_KEY")
    admin_generated_key_file: Path = Path("var/admin-secret-key")

    @property
    def admin_on(self) -> bool:
        """Whether the gateway serves the admin panel."""
        if self.admin_enabled is not None:
            return self.admin_enabled
        return self.environment != "production"

    @model_validator(mode="after")
    def _admin_needs_its_key(self) -> Self:
        if not self.admin_on or self.environment == "local":
            return self
        key = self.admin_secret_key
        if key is None or key.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS:
            raise ValueError(
                "the admin panel needs a real ADMIN_SECRET_KEY outside ENVIRONMENT=local"
            )
        return self

    @model_validator(mode="after")
    def _tls_in_one_process(self) -> Self:
        if self.https and self.workers > 1:
            raise ValueError("GATEWAY_HTTPS needs GATEWAY_WORKERS=1 (scale with replicas)")
        return self
