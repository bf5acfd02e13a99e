from __future__ import annotations

import json

import grpc
import pytest
from grpc.aio import AioRpcError, Metadata

from gateway.errors import rpc_error_response


def _error(code: grpc.StatusCode, details: str, *trailers: tuple[str, str]) -> AioRpcError:
    return AioRpcError(code, Metadata(), Metadata(*trailers), details=details)


def _body(response: object) -> object:
    return json.loads(getattr(response, "body"))  # noqa: B009


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 400),
        (grpc.StatusCode.FAILED_PRECONDITION, 400),
        (grpc.StatusCode.OUT_OF_RANGE, 400),
        (grpc.StatusCode.UNAUTHENTICATED, 401),
        (grpc.StatusCode.PERMISSION_DENIED, 403),
        (grpc.StatusCode.NOT_FOUND, 404),
        (grpc.StatusCode.ALREADY_EXISTS, 409),
        (grpc.StatusCode.ABORTED, 409),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
        (grpc.StatusCode.CANCELLED, 499),
        (grpc.StatusCode.UNIMPLEMENTED, 501),
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
        (grpc.StatusCode.INTERNAL, 500),
        (grpc.StatusCode.UNKNOWN, 500),
        (grpc.StatusCode.DATA_LOSS, 500),
    ],
)
def test_status_table(code: grpc.StatusCode, status: int) -> None:
    response = rpc_error_response(_error(code, "x"))

    assert response.status_code == status
    assert response.headers["cache-control"] == "no-store"


def test_domain_details_reach_the_client() -> None:
    response = rpc_error_response(_error(grpc.StatusCode.NOT_FOUND, "User not found"))

    assert _body(response) == {"detail": "User not found"}


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    ],
)
def test_transport_and_internal_details_never_leak(code: grpc.StatusCode) -> None:
    response = rpc_error_response(_error(code, "ipv4:10.0.0.7:50052 connect failed password=x"))

    assert "10.0.0.7" not in bytes(response.body).decode()
    assert "password" not in bytes(response.body).decode()


def test_field_error_reads_like_fastapi_validation() -> None:
    error = _error(grpc.StatusCode.INVALID_ARGUMENT, "email is not valid", ("field", "email"))

    response = rpc_error_response(error)

    assert response.status_code == 422
    assert _body(response) == {
        "detail": [{"type": "value_error", "loc": ["body", "email"], "msg": "email is not valid"}]
    }


def test_unauthenticated_asks_for_a_bearer_token() -> None:
    response = rpc_error_response(_error(grpc.StatusCode.UNAUTHENTICATED, "Invalid token"))

    assert response.headers["www-authenticate"] == "Bearer"


def test_exhausted_quota_carries_retry_after() -> None:
    error = _error(
        grpc.StatusCode.RESOURCE_EXHAUSTED, "Rate limit exceeded.", ("retry-after", "12")
    )

    response = rpc_error_response(error)

    assert response.headers["retry-after"] == "12"
