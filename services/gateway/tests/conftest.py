"""The gateway app with its real lifespan, its peers pointing at ports where nothing listens."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from gateway.app import create_app
from gateway.settings import Settings
from meshplate_core.mtls import Tls
from meshplate_core.settings import Environment
from meshplate_testing.servers import free_port


def settings_for(environment: Environment, redis_url: str, tls: Tls | None = None) -> Settings:
    """Gateway settings whose services are all down (plaintext unless given a TLS folder)."""
    return Settings(
        environment=environment,
        auth_addr=f"127.0.0.1:{free_port()}",
        users_addr=f"127.0.0.1:{free_port()}",
        ratelimit_addr=f"127.0.0.1:{free_port()}",
        redis_url=redis_url,
        rpc_timeout_s=1.0,
        startup_wait_s=0,
        grpc_plaintext=tls is None,
        tls_dir=tls.folder if tls else None,
        admin_secret_key=SecretStr("gateway-tests-admin-key"),
        _env_file=None,
    )


@pytest.fixture
def client(redis_url: str) -> Iterator[TestClient]:
    """A local-environment gateway (lifespan run) that reaches Redis but no service."""
    with TestClient(create_app(settings_for("local", redis_url))) as client:
        yield client
