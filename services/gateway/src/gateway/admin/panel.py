"""The panel's assembly: starlette-admin with our sign-in, views and templates, mounted under
/admin, every answer `no-store`."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette_admin import BaseAdmin

from gateway.admin.secret import signing_key
from gateway.admin.signin import SignIn
from gateway.admin.traffic import Traffic
from gateway.admin.views.dashboard import Dashboard
from gateway.admin.views.jobs import DeadLettersView, JobsView
from gateway.admin.views.posts import PostsView
from gateway.admin.views.rules import RulesView
from gateway.admin.views.tiers import TiersView
from gateway.admin.views.users import DeletedUsersView, UsersView
from gateway.settings import Settings

PATH = "/admin"
TEMPLATES = Path(__file__).parent / "templates"


class NoStore:
    """Every answer of the panel (pages, assets, redirects) is `Cache-Control: no-store`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def no_store(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, no_store)


class SameOrigin:
    """A form or action posted to the panel from another origin is refused (403), whatever token
    it carries: a second guard beside the CSRF token, against a sibling site that could plant the
    token's cookie. Browsers say where a request comes from (`Origin`, `Sec-Fetch-Site`); a
    client that says nothing is judged by the token alone."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            headers = Headers(scope=scope)
            origin, site = headers.get("origin"), headers.get("sec-fetch-site")
            own = urlsplit(origin).netloc == headers.get("host") if origin else True
            if not own or site not in (None, "same-origin", "none"):
                await PlainTextResponse("Cross-site request refused", 403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def mount_admin(app: FastAPI, settings: Settings, traffic: Traffic) -> None:
    """Serve the panel under /admin; its dashboard shows `traffic`."""
    admin = BaseAdmin(
        title="Meshplate admin",
        base_url=PATH,
        route_name="admin",
        templates_dir=str(TEMPLATES),
        auth_provider=SignIn(settings, path=PATH),
        secret_key=signing_key(settings),
        middlewares=[Middleware(NoStore), Middleware(SameOrigin)],
        index_view=Dashboard(traffic),
    )
    views = (
        UsersView(),
        DeletedUsersView(),
        PostsView(),
        TiersView(),
        RulesView(),
        JobsView(),
        DeadLettersView(),
    )
    for view in views:
        admin.add_view(view)
    admin.mount_to(app)
