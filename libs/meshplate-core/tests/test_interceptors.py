from __future__ import annotations

import grpc
import pytest

from meshplate_core.errors import (
    AlreadyExistsError,
    DomainError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
)
from meshplate_core.interceptors import Context, status_for, valid_request_id
from meshplate_core.logging import request_id

from .conftest import ProbeFactory


class ThingNotFoundError(NotFoundError):
    pass


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidArgumentError("bad"), grpc.StatusCode.INVALID_ARGUMENT),
        (NotFoundError("gone"), grpc.StatusCode.NOT_FOUND),
        (ThingNotFoundError("gone"), grpc.StatusCode.NOT_FOUND),
        (AlreadyExistsError("taken"), grpc.StatusCode.ALREADY_EXISTS),
        (UnauthenticatedError("who"), grpc.StatusCode.UNAUTHENTICATED),
        (PermissionDeniedError("no"), grpc.StatusCode.PERMISSION_DENIED),
        (ResourceExhaustedError("slow", retry_after_s=3), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (UnavailableError("down"), grpc.StatusCode.UNAVAILABLE),
        (DomainError("rule"), grpc.StatusCode.FAILED_PRECONDITION),
    ],
)
def test_status_for_walks_the_error_mro(error: DomainError, code: grpc.StatusCode) -> None:
    assert status_for(error) is code


async def test_domain_error_reaches_the_caller_with_its_status_and_message(
    probe_server: ProbeFactory,
) -> None:
    async def fail(request: bytes, context: Context) -> bytes:
        raise ThingNotFoundError("Thing not found")

    probe = await probe_server({"Fail": fail})

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await probe.call("Fail")

    assert err.value.code() is grpc.StatusCode.NOT_FOUND
    assert err.value.details() == "Thing not found"


async def test_field_of_an_invalid_argument_travels_as_trailing_metadata(
    probe_server: ProbeFactory,
) -> None:
    async def fail(request: bytes, context: Context) -> bytes:
        raise InvalidArgumentError("name is too short", field="name")

    probe = await probe_server({"Fail": fail})

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await probe.call("Fail")

    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert ("field", "name") in tuple(err.value.trailing_metadata() or ())


async def test_exhausted_quota_says_when_to_retry(probe_server: ProbeFactory) -> None:
    async def fail(request: bytes, context: Context) -> bytes:
        raise ResourceExhaustedError("Rate limit exceeded.", retry_after_s=7)

    probe = await probe_server({"Fail": fail})

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await probe.call("Fail")

    assert ("retry-after", "7") in tuple(err.value.trailing_metadata() or ())


async def test_a_dependency_found_out_is_unavailable_not_internal(
    probe_server: ProbeFactory,
) -> None:
    async def database_gone(request: bytes, context: Context) -> bytes:
        try:
            raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")
        except OSError as exc:
            raise RuntimeError("while reading the account") from exc

    probe = await probe_server({"Read": database_gone})

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await probe.call("Read")

    assert err.value.code() is grpc.StatusCode.UNAVAILABLE
    assert err.value.details() == "a dependency is unavailable"


async def test_unexpected_exception_is_internal_and_its_text_never_leaks(
    probe_server: ProbeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    async def crash(request: bytes, context: Context) -> bytes:
        raise RuntimeError("db password=hunter2 leaked")

    probe = await probe_server({"Crash": crash})

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await probe.call("Crash")

    assert err.value.code() is grpc.StatusCode.INTERNAL
    assert err.value.details() == "internal error"
    assert "hunter2" not in str(err.value.debug_error_string())
    assert any("/test.Probe/Crash" in record.getMessage() for record in caplog.records)


async def test_explicit_abort_passes_through_unchanged(probe_server: ProbeFactory) -> None:
    async def deny(request: bytes, context: Context) -> bytes:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, "not yours")
        raise AssertionError("unreachable")

    probe = await probe_server({"Deny": deny})

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await probe.call("Deny")

    assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert err.value.details() == "not yours"


async def test_not_implemented_is_unimplemented(probe_server: ProbeFactory) -> None:
    async def later(request: bytes, context: Context) -> bytes:
        raise NotImplementedError

    probe = await probe_server({"Later": later})

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await probe.call("Later")

    assert err.value.code() is grpc.StatusCode.UNIMPLEMENTED


async def test_caller_request_id_is_in_the_handler_log_context(probe_server: ProbeFactory) -> None:
    async def echo_id(request: bytes, context: Context) -> bytes:
        return (request_id.get() or "").encode()

    probe = await probe_server({"EchoId": echo_id})

    reply = await probe.call("EchoId", metadata=(("x-request-id", "req-42"),))

    assert reply == b"req-42"


async def test_missing_request_id_gets_a_fresh_one(probe_server: ProbeFactory) -> None:
    async def echo_id(request: bytes, context: Context) -> bytes:
        return (request_id.get() or "").encode()

    probe = await probe_server({"EchoId": echo_id})

    first, second = await probe.call("EchoId"), await probe.call("EchoId")

    assert len(first) == 32
    assert first != second


@pytest.mark.parametrize(
    "raw", [None, "", "x" * 129, "bad\nid", "ünïcode", "a b", "<script>", "id;drop", '"quoted"']
)
def test_request_ids_of_a_bad_shape_are_replaced(raw: str | None) -> None:
    fresh = valid_request_id(raw)

    assert fresh != raw
    assert valid_request_id(fresh) == fresh


@pytest.mark.parametrize(
    "raw", ["abc-123", "x" * 128, "4b6c1f0e-2d3a-4c5b-8e9f-0a1b2c3d4e5f", "job:42.retry_1"]
)
def test_request_ids_of_the_right_shape_are_kept(raw: str) -> None:
    assert valid_request_id(raw) == raw
