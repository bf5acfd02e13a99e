"""Settings of the users service (`USERS_*`, plus the shared names of the REST contract)."""

from __future__ import annotations

import os

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from meshplate_core.settings import GrpcServiceSettings, RedisUrl


class Settings(GrpcServiceSettings):
    """Users, tiers and posts: database, events, password hashing, default tier, first admin."""

    model_config = SettingsConfigDict(env_prefix="USERS_")

    grpc_port: int = Field(default=50052, ge=0, le=65535)
    metrics_port: int = Field(default=9152, ge=0, le=65535)
    database_url: str = "sqlite:///var/users.db"
    redis_url: RedisUrl = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("USERS_REDIS_URL", "REDIS_URL"),
    )
    # How long one Redis call (the read cache's, the outbox relay's) may take, connecting
    # included: a Redis that does not answer costs a read this once, then the database serves.
    redis_timeout_s: float = Field(default=0.5, gt=0)
    default_tier_name: str = Field(default="free", validation_alias="DEFAULT_TIER_NAME")
    # auth, whose published keys verify the end user's access token forwarded with each write
    # made for that user; the claims a valid token must carry.
    auth_addr: str = "127.0.0.1:50051"
    rpc_timeout_s: float = Field(default=5.0, gt=0)
    token_issuer: str = "meshplate-auth"
    token_audience: str = "meshplate"
    # Lifetime of cached reads (a user by name, a post, a page of posts); writes never wait it out.
    cache_ttl_s: float = Field(default=300.0, gt=0)
    # The first superuser, created at start when no user has this username.
    admin_name: str = Field(default="Admin", validation_alias="ADMIN_NAME")
    admin_email: str = Field(default="admin@example.com", validation_alias="ADMIN_EMAIL")
    admin_username: str = Field(default="admin", validation_alias="ADMIN_USERNAME")
    admin_password: SecretStr = Field(
        default=SecretStr("changethis"), validation_alias="ADMIN_PASSWORD"
    )
    # argon2id cost: m=7 MiB, t=5, p=1, a row of OWASP's table of equally strong settings
    # (Password Storage Cheat Sheet: m=47104 t=1, 19456 t=2, 12288 t=3, 9216 t=4, 7168 t=5,
    # all p=1); the cheapest in CPU on the 2-core machines we measure on (docs/users.md).
    # Hashes made with other parameters (or bcrypt) are rehashed with these at the user's next
    # successful login.
    argon2_time_cost: int = Field(default=5, ge=1)
    argon2_memory_cost_kib: int = Field(default=7168, ge=7168)
    argon2_parallelism: int = Field(default=1, ge=1)
    # Password checks (logins, sign-ups) hashing at once (default: one per core), in threads of
    # Linux's SCHED_IDLE policy (`password_idle`: they hash on CPU time nothing else wants, and
    # any other thread preempts them at once) or else of `password_nice`, so that on a busy
    # machine reads are served first (docs/users.md has the measurements). A check waits only if it
    # can be done within half of its caller's deadline (`password_default_deadline_s` when
    # the caller sets none), judged from the checks ahead, the concurrency and the measured hash
    # time; otherwise it is refused at once (RESOURCE_EXHAUSTED, 429 with Retry-After). A quarter
    # of the caller's time is kept for the answer: a check that could no longer be done before
    # it, still waiting or already running (starved of CPU time), is refused then.
    password_concurrency: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    password_idle: bool = True
    password_nice: int = Field(default=10, ge=0, le=19)
    password_default_deadline_s: float = Field(default=5.0, gt=0)
