from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import grpc
import jwt
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import text

from auth.keys import parse_keys
from auth.settings import Settings
from meshplate.auth.v1 import auth_pb2
from meshplate_core.database import open_engine
from meshplate_core.events import TokensRevoked, UserDeleted, UserRightsChanged
from meshplate_core.redis_client import connect
from meshplate_core.streams import decode, encode

from .conftest import PASSWORD

if TYPE_CHECKING:
    from meshplate.auth.v1.auth_pb2_grpc import AuthServiceAsyncStub


async def _login(auth: AuthServiceAsyncStub) -> auth_pb2.TokenPair:
    reply = await auth.Login(auth_pb2.LoginRequest(username_or_email="ann", password=PASSWORD))
    return reply.tokens


async def _code(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value.code()


async def _eventually_refused(auth: AuthServiceAsyncStub, token: str) -> grpc.StatusCode:
    async with asyncio.timeout(5):
        while True:
            try:
                await auth.Authenticate(auth_pb2.AuthenticateRequest(access_token=token))
            except grpc.aio.AioRpcError as err:
                return err.code()
            await asyncio.sleep(0.05)


async def test_login_issues_tokens_that_authenticate(auth: AuthServiceAsyncStub) -> None:
    tokens = await _login(auth)

    principal = (
        await auth.Authenticate(auth_pb2.AuthenticateRequest(access_token=tokens.access_token))
    ).principal

    assert principal.user_id == 2
    assert principal.HasField("tier_id")
    assert not principal.is_superuser
    claims = jwt.decode(tokens.access_token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == pytest.approx(30 * 60, abs=1)
    assert tokens.refresh_expires_at.ToDatetime(UTC) > datetime.now(UTC)


async def test_wrong_password_is_unauthenticated(auth: AuthServiceAsyncStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await auth.Login(auth_pb2.LoginRequest(username_or_email="ann", password="nope-nope"))

    assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert err.value.details() == "Wrong username, email or password."


async def test_jwks_publishes_every_configured_key(
    auth: AuthServiceAsyncStub, keys_pem: str
) -> None:
    reply = await auth.GetJwks(auth_pb2.GetJwksRequest())

    assert [k.kid for k in reply.keys] == [k.kid for k in parse_keys(keys_pem).published]


async def test_tokens_of_a_retired_signing_key_still_verify(
    auth: AuthServiceAsyncStub, keys_pem: str
) -> None:
    retired = parse_keys(keys_pem).published[1]
    tokens = await _login(auth)
    claims = jwt.decode(tokens.access_token, options={"verify_signature": False})
    resigned = jwt.encode(claims, retired.private, algorithm="EdDSA", headers={"kid": retired.kid})

    reply = await auth.Authenticate(auth_pb2.AuthenticateRequest(access_token=resigned))

    assert reply.principal.user_id == int(claims["sub"])


async def test_revoking_a_user_refuses_tokens_issued_before_only(
    auth: AuthServiceAsyncStub,
) -> None:
    old = await _login(auth)
    cutoff = Timestamp()
    cutoff.FromDatetime(datetime.now(UTC))
    await asyncio.sleep(0.01)
    new = await _login(auth)

    await auth.RevokeUserTokens(auth_pb2.RevokeUserTokensRequest(user_id=2, issued_before=cutoff))

    assert (
        await _code(auth.Authenticate(auth_pb2.AuthenticateRequest(access_token=old.access_token)))
        is grpc.StatusCode.UNAUTHENTICATED
    )
    assert (
        await _code(auth.Refresh(auth_pb2.RefreshRequest(refresh_token=old.refresh_token)))
        is grpc.StatusCode.UNAUTHENTICATED
    )
    await auth.Authenticate(auth_pb2.AuthenticateRequest(access_token=new.access_token))


async def test_revocations_are_published_for_the_gateways(
    auth: AuthServiceAsyncStub, settings: Settings
) -> None:
    tokens = await _login(auth)
    token_id = jwt.decode(tokens.access_token, options={"verify_signature": False})["jti"]

    await auth.Logout(auth_pb2.LogoutRequest(access_token=tokens.access_token))

    entries: Any = []
    async with connect(settings.redis_url) as client, asyncio.timeout(5):
        while len(entries) < 2:
            entries = await client.xrange(TokensRevoked.STREAM)
            await asyncio.sleep(0.02)
    events = [decode(TokensRevoked, fields) for _id, fields in entries]
    assert events[0].token_id == token_id
    assert {e.family_id is not None for e in events} == {False, True}


@pytest.mark.parametrize("happened", ["deleted", "rights changed"])
async def test_a_deleted_user_or_one_whose_rights_changed_loses_their_tokens(
    auth: AuthServiceAsyncStub, settings: Settings, happened: str
) -> None:
    tokens = await _login(auth)
    # Made after the login: what happened revokes the tokens issued before it.
    event: UserDeleted | UserRightsChanged = (
        UserDeleted(user_id=2, hard=False)
        if happened == "deleted"
        else UserRightsChanged(user_id=2, is_superuser=True)
    )

    async with connect(settings.redis_url) as client:
        await client.xadd(event.STREAM, encode(event))  # type: ignore[arg-type]  # redis-py wants a dict of Any

    assert await _eventually_refused(auth, tokens.access_token) is grpc.StatusCode.UNAUTHENTICATED


async def test_purge_removes_only_what_has_expired(
    auth: AuthServiceAsyncStub, settings: Settings
) -> None:
    tokens = await _login(auth)
    await auth.Logout(auth_pb2.LogoutRequest(access_token=tokens.access_token))
    engine = open_engine(settings.database_url, pool_size=1, application_name="t")
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text("UPDATE revocation SET expires_at = now() - interval '1 minute'")
            )
        reply = await auth.PurgeExpired(auth_pb2.PurgeExpiredRequest())
        again = await auth.PurgeExpired(auth_pb2.PurgeExpiredRequest())
    finally:
        await engine.dispose()

    assert (reply.revocations_removed, reply.families_removed) == (1, 0)
    assert (again.revocations_removed, again.families_removed) == (0, 0)


async def test_sixteen_logins_at_once_all_succeed(auth: AuthServiceAsyncStub) -> None:
    request = auth_pb2.LoginRequest(username_or_email="ann", password=PASSWORD)

    replies = await asyncio.gather(*(auth.Login(request) for _ in range(16)))

    assert len({r.tokens.refresh_token for r in replies}) == 16


@pytest.mark.parametrize(
    "users_overrides",
    # One check at a time, each dearer than in production.
    [{"argon2_time_cost": 12, "password_concurrency": 1}],
)
async def test_a_flood_of_logins_beyond_the_deadline_is_told_when_to_come_back(
    auth: AuthServiceAsyncStub,
) -> None:
    request = auth_pb2.LoginRequest(username_or_email="ann", password=PASSWORD)

    # auth passes its caller's two seconds on: users takes the checks it can do in time.
    answers = await asyncio.gather(
        *(auth.Login(request, timeout=2) for _ in range(64)), return_exceptions=True
    )

    refused = [a for a in answers if isinstance(a, grpc.aio.AioRpcError)]
    done = [a for a in answers if isinstance(a, auth_pb2.LoginResponse)]
    assert refused
    assert done
    assert len(refused) + len(done) == 64
    assert {(e.code(), e.details()) for e in refused} == {
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "Too many password checks at once; try again shortly.")
    }
    assert all(int(dict(e.trailing_metadata() or ())["retry-after"]) >= 1 for e in refused)
