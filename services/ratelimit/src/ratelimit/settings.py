"""Settings of the ratelimit service (`RATELIMIT_*`, plus the shared names of the REST contract)."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from meshplate_core.settings import GrpcServiceSettings, RedisUrl


class Settings(GrpcServiceSettings):
    """Rules (database), counters (Redis), the global default and the failure policy."""

    model_config = SettingsConfigDict(env_prefix="RATELIMIT_")

    grpc_port: int = Field(default=50053, ge=0, le=65535)
    metrics_port: int = Field(default=9153, ge=0, le=65535)
    database_url: str = "sqlite:///var/ratelimit.db"
    redis_url: RedisUrl = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("RATELIMIT_REDIS_URL", "REDIS_URL"),
    )
    default_limit: int = Field(default=10, ge=1, validation_alias="DEFAULT_RATE_LIMIT_LIMIT")
    default_period_s: int = Field(default=3600, ge=1, validation_alias="DEFAULT_RATE_LIMIT_PERIOD")
    # Login attempts per (client address, username) before further ones get 429.
    login_attempt_limit: int = Field(default=10, ge=1)
    login_attempt_period_s: int = Field(default=900, ge=1)
    # Envoy's ShouldRateLimit: the descriptor domain answered, and its per-address edge limit.
    envoy_domain: str = "meshplate"
    edge_limit: int = Field(default=600, ge=1)
    edge_period_s: int = Field(default=60, ge=1)
    # With Redis unreachable: admit (true, logged and counted) or refuse with 503 (false).
    fail_open: bool = True
    # Shards the counters are spread over (ratelimit.shards): 1 on one Redis server; on a Redis
    # Cluster, the number of masters (or a multiple), so each master counts its share.
    redis_shards: int = Field(default=1, ge=1, le=256)
    # Deadline of one Redis call on the decision path.
    redis_timeout_s: float = Field(default=0.5, gt=0)
    # Under load, decisions are counted in Redis at most once per this window, each run carrying
    # the checks that arrived meanwhile (a check that finds the limiter idle longer goes at once).
    batch_linger_s: float = Field(default=0.001, ge=0, le=0.05)
