"""The admin panel over HTTP, through Envoy: sign-in for superusers only, a server-side session in
Redis named by a cookie (a new id at every sign-in), CSRF on every form, sign-out and idle expiry
ending the session at once, and a session that ends when its user is demoted or deleted; the users
and tiers views act through the same RPCs as the REST API."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest
from cryptography.fernet import Fernet

from gateway.admin.sessions import redis_key
from meshplate_core.redis_client import RedisClient, connect
from meshplate_testing.smtp import Mailbox

from .conftest import Stack, StartWorker, until
from .identity import ADMIN, PASSWORD, bearer, log_in, sign_up

SESSION = "meshplate_admin"
CSRF = "starlette_admin_csrftoken"


@dataclass
class Panel:
    """One browser's visits to /admin: its cookies, and the CSRF token its pages carry."""

    client: httpx.AsyncClient

    @property
    def token(self) -> str:
        return self.client.cookies.get(CSRF) or ""

    @property
    def session(self) -> str | None:
        return self.client.cookies.get(SESSION)

    async def page(self, path: str) -> httpx.Response:
        return await self.client.get(f"/admin{path}")

    async def sign_in(
        self, username: str, password: str, *, token: str | None = None
    ) -> httpx.Response:
        """The sign-in form, posted as its page would (with the page's CSRF token)."""
        await self.page("/login")
        form = {"username": username, "password": password}
        if token is None:
            form["csrftoken"] = self.token
        elif token:
            form["csrftoken"] = token
        return await self.client.post("/admin/login", data=form)

    async def sign_out(self) -> httpx.Response:
        return await self.client.post("/admin/logout", data={"csrftoken": self.token})

    async def row_action(
        self,
        view: str,
        name: str,
        pk: int | str,
        form: dict[str, str] | None = None,
        *,
        token: str | None = None,
    ) -> httpx.Response:
        headers = {"X-CSRFToken": self.token if token is None else token} if token != "" else {}
        return await self.client.post(
            f"/admin/_api/{view}/row-action",
            params={"name": name, "pk": str(pk)},
            data=form or {},
            headers=headers,
        )

    async def signed_in(self) -> bool:
        """Whether a page of the panel is served (rather than a redirect to sign in)."""
        return (await self.page("/users/list")).status_code == 200


def _column(page: httpx.Response, name: str) -> list[str]:
    """The values of one column of a list page, row by row."""
    return re.findall(
        rf'<td data-column="{name}"\s*>.*?title="([^"]*)"', page.text, flags=re.DOTALL
    )


async def _field(redis: RedisClient, key: str, name: str) -> bytes:
    """One field of a session's hash (asserted present)."""
    value = await redis.hget(key, name)
    assert isinstance(value, bytes), name
    return value


@asynccontextmanager
async def _browser(stack: Stack) -> AsyncIterator[Panel]:
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=10) as client:
        yield Panel(client)


@pytest.fixture
async def root(stack: Stack) -> AsyncIterator[Panel]:
    """root, signed in to the panel."""
    async with _browser(stack) as panel:
        assert (await panel.sign_in(*ADMIN)).status_code == 303
        yield panel


async def _user_id(stack: Stack, username: str) -> int:
    async with stack.client() as client:
        return int((await sign_up(client, username))["id"])


async def test_root_signs_in_to_a_session_cookie_fit_for_it(stack: Stack) -> None:
    async with _browser(stack) as panel:
        before = await panel.page("/users/list")
        signed_in = await panel.sign_in(*ADMIN)
        users = await panel.page("/users/list")

    assert (before.status_code, before.headers["location"].split("?")[0]) == (
        303,
        f"{stack.base_url}/admin/login",
    )
    assert signed_in.status_code == 303
    cookie = signed_in.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION}=")
    assert {"HttpOnly", "SameSite=strict", "Path=/admin"} <= {
        part.strip() for part in cookie.split(";")
    }
    assert users.status_code == 200
    assert _column(users, "username") == ["root"]
    assert users.headers["cache-control"] == "no-store"


async def test_the_pages_fetch_nothing_from_elsewhere(stack: Stack) -> None:
    async with _browser(stack) as panel:
        sign_in = await panel.page("/login")

    fetched = [
        url
        for pair in re.findall(r'(?:src|href)="([^"]+)"|url\([\'"]?([^\'")]+)', sign_in.text)
        for url in pair
        if url
    ]
    assert fetched
    elsewhere = [
        url
        for url in fetched
        if url.startswith(("http:", "https:", "//")) and not url.startswith(stack.base_url)
    ]
    assert elsewhere == []


async def test_a_user_who_is_not_a_superuser_is_refused(stack: Stack) -> None:
    await _user_id(stack, "ann")
    async with _browser(stack) as panel:
        refused = await panel.sign_in("ann", PASSWORD)
        still_out = await panel.signed_in()

    assert refused.status_code == 400
    assert "Only superusers may sign in here." in refused.text
    assert panel.session is None
    assert not still_out


async def test_a_wrong_password_is_refused_and_counted_like_a_rest_login(stack: Stack) -> None:
    async with _browser(stack) as panel:
        answers = [await panel.sign_in("root", "wrong-password") for _ in range(11)]
    async with stack.client() as client:
        # The same budget as the REST login's (10 a quarter of an hour per address and name).
        rest = await client.post(
            "/api/v1/login", data={"username": "root", "password": "wrong-password"}
        )

    assert {answer.status_code for answer in answers} == {400}
    assert all("Wrong username, e-mail or password." in a.text for a in answers[:10])
    assert "Rate limit exceeded." in answers[10].text
    assert rest.status_code == 429


async def test_sign_in_gives_a_new_session_id_never_one_the_browser_brought(
    stack: Stack,
) -> None:
    async with _browser(stack) as panel:
        # A session id planted in the browser before sign-in (fixation) is not adopted.
        panel.client.cookies.set(SESSION, "planted", domain="127.0.0.1", path="/admin")
        await panel.sign_in(*ADMIN)
        first = panel.session
        await panel.sign_out()
        await panel.sign_in(*ADMIN)
        second = panel.session
        async with _browser(stack) as other:
            other.client.cookies.set(SESSION, "planted", domain="127.0.0.1", path="/admin")
            planted_works = await other.signed_in()
            other.client.cookies.set(SESSION, first or "", domain="127.0.0.1", path="/admin")
            first_works = await other.signed_in()

    assert first not in (None, "planted")
    assert second not in (None, "planted", first)
    assert not planted_works
    assert not first_works


@pytest.mark.parametrize("token", ["", "bad-token"], ids=["without", "wrong"])
async def test_a_form_without_or_with_a_wrong_csrf_token_changes_nothing(
    stack: Stack, root: Panel, token: str
) -> None:
    ann = await _user_id(stack, "ann")

    refused_action = await root.row_action("users", "grant", ann, token=token)
    refused_sign_in = await root.sign_in(*ADMIN, token=token)
    refused_sign_out = await root.client.post(
        "/admin/logout", data={"csrftoken": token} if token else {}
    )
    still_in = await root.signed_in()
    async with _browser(stack) as panel:
        ann_may_sign_in = await panel.sign_in("ann", PASSWORD)

    assert [refused_action.status_code, refused_sign_in.status_code] == [403, 403]
    assert refused_sign_out.status_code == 403
    assert still_in
    assert ann_may_sign_in.status_code == 400  # still no superuser


async def test_sign_out_ends_the_session_at_once(stack: Stack, root: Panel) -> None:
    session = root.session
    signed_out = await root.sign_out()
    async with _browser(stack) as replay:
        replay.client.cookies.set(SESSION, session or "", domain="127.0.0.1", path="/admin")
        replayed = await replay.signed_in()

    assert signed_out.status_code == 303
    assert root.session is None
    assert not replayed


async def test_a_session_idle_longer_than_allowed_is_over(stack: Stack, root: Panel) -> None:
    # The session's key in Redis expires after ADMIN_SESSION_IDLE_S without a request: made 1 s.
    key = redis_key(root.session or "")
    async with connect(stack.gateway_settings.redis_url) as redis:
        assert await redis.ttl(key) > 1
        await redis.expire(key, 1)
    await asyncio.sleep(1.5)

    assert not await root.signed_in()


async def test_a_demoted_superuser_loses_the_session_at_the_next_request(
    stack: Stack, root: Panel
) -> None:
    ann = await _user_id(stack, "ann")
    granted = await root.row_action("users", "grant", ann)
    async with _browser(stack) as annie:
        assert (await annie.sign_in("ann", PASSWORD)).status_code == 303
        before = await annie.signed_in()
        taken = await root.row_action("users", "revoke", ann)
        after = await annie.signed_in()
        again = await annie.sign_in("ann", PASSWORD)

    assert (granted.status_code, taken.status_code) == (200, 200)
    assert before
    assert not after
    assert again.status_code == 400


async def test_a_deleted_superuser_loses_the_session_at_the_next_request(
    stack: Stack, root: Panel
) -> None:
    ann = await _user_id(stack, "ann")
    await root.row_action("users", "grant", ann)
    async with _browser(stack) as annie:
        assert (await annie.sign_in("ann", PASSWORD)).status_code == 303
        deleted = await root.row_action("users", "delete", ann)
        after = await annie.signed_in()

    assert deleted.status_code == 200
    assert not after


async def test_a_user_found_by_search_moves_to_a_tier_and_gets_its_limit(
    stack: Stack, root: Panel
) -> None:
    async with stack.client() as client:
        ann = await _user_id(stack, "ann")
        await _user_id(stack, "bob")
        access, _refresh = await log_in(client, "ann")
        tier = await client.post(
            "/api/v1/tier", json={"name": "gold"}, headers=bearer((await log_in(client, *ADMIN))[0])
        )
        root_token = (await log_in(client, *ADMIN))[0]
        await client.post(
            "/api/v1/tier/gold/rate_limit",
            json={"path": "/api/v1/user/me/", "limit": 77, "period": 60},
            headers=bearer(root_token),
        )
        found = await root.page("/users/list?q=ANN")
        moved = await root.row_action(
            "users", "change_tier", ann, {"tier_id": str(tier.json()["id"])}
        )
        me = await client.get("/api/v1/user/me/", headers=bearer(access))

    assert _column(found, "username") == ["ann"]
    assert moved.status_code == 200, moved.text
    assert me.headers["x-ratelimit-limit"] == "77"


async def test_a_deleted_user_is_restored_or_removed_for_good(stack: Stack, root: Panel) -> None:
    ann, bob = await _user_id(stack, "ann"), await _user_id(stack, "bob")
    await root.row_action("users", "delete", ann)
    await root.row_action("users", "delete", bob)

    deleted = await root.page("/deleted-users/list")
    restored = await root.row_action("deleted-users", "restore", ann)
    erased = await root.row_action("deleted-users", "erase", bob)
    async with stack.client() as client:
        ann_back = await client.get("/api/v1/user/ann")
        bob_gone = await client.get("/api/v1/user/bob")
        bob_again = await client.post(
            "/api/v1/user",
            json={
                "name": "Bob",
                "username": "bob",
                "email": "bob@example.com",
                "password": PASSWORD,
            },
        )

    assert _column(deleted, "username") == ["ann", "bob"]
    assert (restored.status_code, erased.status_code) == (200, 200)
    assert ann_back.status_code == 200
    assert bob_gone.status_code == 404
    assert bob_again.status_code == 201  # the username was freed


async def test_a_tier_in_use_is_not_deleted_and_says_why(stack: Stack, root: Panel) -> None:
    async with stack.client() as client:
        tiers = await client.get("/api/v1/tiers")
    free = next(t for t in tiers.json()["data"] if t["name"] == "free")

    answer = await root.client.post(
        "/admin/_api/tiers/action",
        params={"name": "delete", "pks": str(free["id"])},
        headers={"X-CSRFToken": root.token},
    )
    async with stack.client() as client:
        still = await client.get("/api/v1/tier/free")

    assert answer.status_code == 400
    assert "in use" in answer.json()["msg"].lower()
    assert still.status_code == 200


async def _form(panel: Panel, path: str, fields: dict[str, str]) -> httpx.Response:
    """A create or edit form of the panel, posted as its page would."""
    await panel.page(path)
    return await panel.client.post(f"/admin{path}", data={**fields, "csrftoken": panel.token})


async def test_rules_are_created_edited_and_deleted_per_tier(stack: Stack, root: Panel) -> None:
    created = await _form(
        root,
        "/rules/create",
        {"tier": "free", "path": "/api/v1/user/me/", "limit": "3", "period": "60", "name": "me"},
    )
    unknown_tier = await _form(
        root, "/rules/create", {"tier": "nope", "path": "/x", "limit": "1", "period": "1"}
    )
    bad_limit = await _form(
        root, "/rules/create", {"tier": "free", "path": "/x", "limit": "0", "period": "1"}
    )
    listed = await root.page("/rules/list")
    async with stack.client() as client:
        access, _refresh = await log_in(client, *ADMIN)
        rules = await client.get("/api/v1/tier/free/rate_limits", headers=bearer(access))
        [rule] = [r for r in rules.json()["data"] if r["name"] == "me"]
        tier_id = rule["tier_id"]
        edited = await _form(
            root,
            f"/rules/edit?pk={tier_id}-{rule['id']}",
            {"path": "/api/v1/user/me/", "limit": "5", "period": "60", "name": "me"},
        )
        after_edit = await client.get(
            f"/api/v1/tier/free/rate_limit/{rule['id']}", headers=bearer(access)
        )
        deleted = await root.client.post(
            "/admin/_api/rules/action",
            params={"name": "delete", "pks": f"{tier_id}-{rule['id']}"},
            headers={"X-CSRFToken": root.token},
        )
        after_delete = await client.get(
            f"/api/v1/tier/free/rate_limit/{rule['id']}", headers=bearer(access)
        )

    assert created.status_code == 303, created.text
    assert unknown_tier.status_code == 422
    assert "Tier not found" in unknown_tier.text
    assert bad_limit.status_code == 422
    # ratelimit keeps paths without their trailing slash.
    assert "/api/v1/user/me" in _column(listed, "path")
    assert edited.status_code == 303, edited.text
    assert after_edit.json()["limit"] == 5
    assert deleted.status_code == 200, deleted.text
    assert after_delete.status_code == 404


async def test_a_users_posts_are_found_by_username_and_deleted(stack: Stack, root: Panel) -> None:
    async with stack.client() as client:
        await _user_id(stack, "ann")
        access, _refresh = await log_in(client, "ann")
        post = await client.post(
            "/api/v1/ann/post", json={"title": "Hello", "text": "First"}, headers=bearer(access)
        )
        nobody = await root.page("/posts/list")
        found = await root.page("/posts/list?q=ann")
        deleted = await root.client.post(
            "/admin/_api/posts/action",
            params={"name": "delete", "pks": f"ann-{post.json()['id']}"},
            headers={"X-CSRFToken": root.token},
        )
        gone = await client.get(f"/api/v1/ann/post/{post.json()['id']}")

    assert _column(nobody, "title") == []
    assert _column(found, "title") == ["Hello"]
    assert deleted.status_code == 200, deleted.text
    assert gone.status_code == 404


async def test_recent_jobs_show_status_and_a_dead_job_is_replayed_until_it_succeeds(
    stack: Stack, root: Panel, start_worker: StartWorker, mailbox: Mailbox
) -> None:
    # The relay refuses the first welcome e-mail for good: that job is dead at once.
    mailbox.refuse(550, times=1)
    await start_worker()
    async with stack.client() as client:
        task = (await client.post("/api/v1/tasks/task", params={"message": "hi"})).json()["id"]
    await _user_id(stack, "ann")

    async def dead_letter() -> bool:
        return bool(_column(await root.page("/dead-letters/list"), "kind"))

    await until(dead_letter)
    dead = await root.page("/dead-letters/list")
    [key] = re.findall(r'data-sa-pk="([^"]+)"', dead.text)
    replayed = await root.row_action("dead-letters", "replay", key)
    again = await root.row_action("dead-letters", "replay", key)

    async def all_succeeded() -> bool:
        return set(_column(await root.page("/jobs/list"), "status")) == {"succeeded"}

    await until(all_succeeded)
    jobs = await root.page("/jobs/list")

    assert _column(dead, "kind") == ["welcome-email"]
    assert "550" in dead.text
    assert replayed.status_code == 200, replayed.text
    assert again.status_code == 400
    assert "replayed already" in again.json()["msg"]
    assert task in _column(jobs, "id")
    # root's welcome (made at start) and ann's: one refused, then replayed.
    assert len(mailbox.messages) == 2
    assert not _column(await root.page("/dead-letters/list"), "kind")


async def test_the_dashboard_shows_readiness_and_the_last_minute_s_traffic(
    stack: Stack, root: Panel
) -> None:
    first = await root.page("/")
    async with stack.client() as client:
        for _ in range(5):
            await client.get("/api/v1/users")
    second = await root.page("/")
    await stack.stop("ratelimit")
    without = await root.page("/")

    def check(page: httpx.Response, name: str) -> str:
        found = re.search(rf'data-check="{name}">\s*<span[^>]*>([^<]+)<', page.text)
        assert found is not None, name
        return found[1]

    def figure(page: httpx.Response, name: str) -> float:
        found = re.search(rf'id="{name}">([^<]+)<', page.text)
        assert found is not None, name
        return float(found[1])

    assert first.status_code == 200
    assert {check(first, name) for name in ("auth", "users", "ratelimit", "redis")} == {"ok"}
    assert figure(second, "requests") - figure(first, "requests") >= 5
    assert figure(second, "errors") == 0
    assert 'http-equiv="refresh"' in first.text
    assert check(without, "ratelimit") != "ok"
    assert check(without, "users") == "ok"


async def test_an_expired_access_token_is_refreshed_once_for_requests_that_come_together(
    stack: Stack, root: Panel
) -> None:
    key = redis_key(root.session or "")
    cipher = Fernet((root.session or "").partition(".")[2] + "=")
    async with connect(stack.gateway_settings.redis_url) as redis:
        tokens = json.loads(cipher.decrypt(await _field(redis, key, "tokens")))
        # As if the access token had expired: it no longer verifies.
        expired = {**tokens, "access": "expired.access.token"}
        await redis.hset(key, "tokens", cipher.encrypt(json.dumps(expired).encode()))
        together = await asyncio.gather(*(root.signed_in() for _ in range(4)))
        refreshed = json.loads(cipher.decrypt(await _field(redis, key, "tokens")))
    later = await root.signed_in()

    assert together == [True] * 4
    assert refreshed["access"] not in (tokens["access"], "expired.access.token")
    assert refreshed["refresh"] != tokens["refresh"]
    assert later


async def test_redis_holds_no_usable_token_of_a_session(stack: Stack, root: Panel) -> None:
    async with connect(stack.gateway_settings.redis_url) as redis:
        fields = await redis.hgetall(redis_key(root.session or ""))
        cookie_id = (root.session or "").partition(".")[0]

    assert set(fields) == {b"user_id", b"began", b"tokens"}
    # No JWT (base64url of '{"'), and neither the cookie's id nor its key.
    assert not any(b"eyJ" in value for value in fields.values())
    assert not any(cookie_id.encode() in value for value in fields.values())


async def test_a_session_ends_at_its_maximum_age_whatever_happens(
    stack: Stack, root: Panel
) -> None:
    async with connect(stack.gateway_settings.redis_url) as redis:
        began = float(await _field(redis, redis_key(root.session or ""), "began"))
        await redis.hset(redis_key(root.session or ""), "began", began - 43201)

    assert not await root.signed_in()


async def test_the_dashboard_s_own_refreshes_do_not_keep_a_session_alive(
    stack: Stack, root: Panel
) -> None:
    key = redis_key(root.session or "")
    async with connect(stack.gateway_settings.redis_url) as redis:
        await redis.expire(key, 5)
        auto = await root.page("/?auto=1")
        after_auto = await redis.ttl(key)
        await root.page("/")
        after_visit = await redis.ttl(key)

    assert auto.status_code == 200
    assert after_auto <= 5
    assert after_visit > 1000


async def test_a_form_posted_from_another_site_is_refused_whatever_its_token(
    stack: Stack, root: Panel
) -> None:
    ann = await _user_id(stack, "ann")
    elsewhere = await root.client.post(
        "/admin/_api/users/row-action",
        params={"name": "grant", "pk": str(ann)},
        headers={"X-CSRFToken": root.token, "Origin": "https://evil.example"},
    )
    cross_site = await root.client.post(
        "/admin/_api/users/row-action",
        params={"name": "grant", "pk": str(ann)},
        headers={"X-CSRFToken": root.token, "Sec-Fetch-Site": "cross-site"},
    )
    async with _browser(stack) as annie:
        ann_may_sign_in = await annie.sign_in("ann", PASSWORD)

    assert (elsewhere.status_code, cross_site.status_code) == (403, 403)
    assert ann_may_sign_in.status_code == 400  # still no superuser


async def test_odd_keys_and_searches_are_not_found_or_said_never_a_500(
    stack: Stack, root: Panel
) -> None:
    pages = [
        "/users/detail?pk=abc",
        "/users/detail?pk=99999999999999999999999",
        "/users/detail?pk=%C2%B2",
        "/deleted-users/detail?pk=1",
        "/tiers/detail?pk=-1",
        "/rules/detail?pk=1-x",
        "/posts/detail?pk=ann-1",
        "/jobs/detail?pk=nope",
        "/dead-letters/detail?pk=kind:not-an-id",
        "/users/list?page=99999999999",
    ]
    answers = {path: (await root.page(path)).status_code for path in pages}
    long_search = await root.page("/users/list?q=" + "x" * 300)
    action = await root.row_action("users", "grant", "abc")

    assert all(status < 500 for status in answers.values()), answers
    assert long_search.status_code == 400
    assert "query" in long_search.text
    assert action.status_code == 400
    assert action.json()["msg"] == "No such user."


async def test_select_all_acts_on_every_row_the_search_matches(stack: Stack, root: Panel) -> None:
    for name in ("ann", "anna", "annette", "bob"):
        await _user_id(stack, name)

    answer = await root.client.post(
        "/admin/_api/users/action",
        params={"name": "delete", "all": "1", "_list_query": "?q=ann"},
        headers={"X-CSRFToken": root.token},
    )
    left = await root.page("/users/list")

    assert answer.status_code == 200, answer.text
    assert _column(left, "username") == ["root", "bob"]


async def test_tiers_are_created_and_renamed_in_forms_that_check_their_token(
    stack: Stack, root: Panel
) -> None:
    created = await _form(root, "/tiers/create", {"name": "silver"})
    taken = await _form(root, "/tiers/create", {"name": "silver"})
    without_token = await root.client.post("/admin/tiers/create", data={"name": "bronze"})
    async with stack.client() as client:
        silver = (await client.get("/api/v1/tier/silver")).json()
        renamed = await _form(root, f"/tiers/edit?pk={silver['id']}", {"name": "platinum"})
        after = await client.get("/api/v1/tier/platinum")
        bronze = await client.get("/api/v1/tier/bronze")

    assert created.status_code == 303, created.text
    assert taken.status_code == 422
    assert without_token.status_code == 403
    assert renamed.status_code == 303, renamed.text
    assert after.json()["id"] == silver["id"]
    assert bronze.status_code == 404
