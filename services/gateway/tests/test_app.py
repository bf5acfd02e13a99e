from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from meshplate_core.mtls import Tls
from meshplate_core.settings import Environment

from .conftest import settings_for

DOCS = ["/docs", "/redoc", "/openapi.json"]


@pytest.mark.parametrize("path", DOCS)
def test_docs_are_public_locally(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 200


def test_openapi_describes_the_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    assert {"/api/v1/user", "/api/v1/user/{username}", "/health/ready"} <= set(paths)


def test_openapi_keeps_each_routers_tags(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    assert paths["/api/v1/{username}/posts"]["get"]["tags"] == ["posts"]
    assert paths["/api/v1/tier/{name}"]["patch"]["tags"] == ["tiers"]


@pytest.mark.parametrize(("environment", "status"), [("staging", 401), ("production", 404)])
@pytest.mark.parametrize("path", DOCS)
def test_docs_are_closed_outside_local(
    redis_url: str,
    environment: Environment,
    status: int,
    path: str,
    workload_tls: Callable[[str], Tls],
) -> None:
    settings = settings_for(environment, redis_url, workload_tls("gateway"))
    with TestClient(create_app(settings)) as client:
        response = client.get(path)

    assert response.status_code == status


def test_request_id_is_echoed(client: TestClient) -> None:
    response = client.get("/health", headers={"X-Request-ID": "trace-1"})

    assert response.headers["x-request-id"] == "trace-1"


def test_a_request_id_too_long_to_trust_is_replaced(client: TestClient) -> None:
    response = client.get("/health", headers={"X-Request-ID": "x" * 500})

    assert len(response.headers["x-request-id"]) == 32


def test_liveness_answers_with_nothing_else_up(client: TestClient) -> None:
    response = client.get("/health")

    assert response.status_code == 200
    assert response.json()["environment"] == "local"
    assert response.headers["cache-control"] == "no-store"


def test_readiness_names_every_service_that_is_down(client: TestClient) -> None:
    response = client.get("/health/ready")

    assert response.status_code == 503
    assert response.json() == {
        "status": "unhealthy",
        "checks": {
            "auth": "unavailable",
            "users": "unavailable",
            "ratelimit": "unavailable",
            "redis": "ok",
        },
    }


def test_redis_down_is_a_failed_check_not_an_error(redis_url: str) -> None:
    settings = settings_for("local", redis_url.replace(redis_url.split("/")[2], "127.0.0.1:1"))
    with TestClient(create_app(settings)) as client:
        response = client.get("/health/redis")

    assert response.status_code == 503
    assert response.json()["checks"]["redis"].startswith("unavailable")


def test_unknown_route_is_404_json(client: TestClient) -> None:
    response = client.get("/api/v1/nothing-here")

    assert (response.status_code, response.json()) == (404, {"detail": "Not Found"})
