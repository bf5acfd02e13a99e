"""The answers the OpenAPI document declares besides each route's success, so that a generated
client knows them: the errors a route gives by what it does (`errors(403, 404)`, in its
decorator), and those any route may give by where it sits (`declare_common`, once every route is
in place), with the headers that come with them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.routing import BaseRoute

from gateway.limiting import LIMITED_PREFIX


class Problem(BaseModel):
    """An error answer: what went wrong, in words meant for the caller."""

    detail: str


_MEANING = {
    400: "The request cannot be read or applied as it stands (a body that is not JSON, say).",
    401: "No valid access token: missing where one is needed, or expired, revoked or forged.",
    403: "The token's user may not do this.",
    404: "Not found (or not visible to the caller).",
    409: "It conflicts with what exists (a username, e-mail or name in use; a tier in use).",
    413: "The body is over the limit (1 MiB).",
    429: "Over a rate limit: try again after Retry-After seconds.",
    503: "A service or store this needs is unavailable; try again shortly.",
    504: "A service did not answer in time.",
}


def _header(description: str, kind: str = "string") -> dict[str, Any]:
    return {"description": description, "schema": {"type": kind}}


REQUEST_ID = {"X-Request-ID": _header("The request's id: the caller's own, or one made for it.")}
RATE_LIMIT = {
    "X-RateLimit-Limit": _header("Requests allowed in the current window.", "integer"),
    "X-RateLimit-Remaining": _header("Requests left in the current window.", "integer"),
    "X-RateLimit-Reset": _header("Seconds until the window resets.", "integer"),
}
_EXTRA_HEADERS = {
    401: {"WWW-Authenticate": _header("Bearer")},
    429: {**RATE_LIMIT, "Retry-After": _header("Seconds to wait.", "integer")},
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses` of a route that gives these error statuses by what it does."""
    return {
        status: {
            "model": Problem,
            "description": _MEANING[status],
            "headers": {**REQUEST_ID, **_EXTRA_HEADERS.get(status, {})},
        }
        for status in statuses
    }


def declare_common(routes: Iterable[BaseRoute]) -> None:
    """Declare on each route what any route may answer where it sits: under /api, a 401 for a
    bad token (any route, as tokens are checked before routing), 429 over a limit and the
    X-RateLimit-* headers on its answers; 400 (unreadable) and 413 where a body is read; 503 and 504 wherever a
    service is called; the request id on every answer."""
    for route in routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        limited = route.path.startswith(LIMITED_PREFIX)
        common = [401, 429] if limited else []
        if route.body_field is not None:
            common += [400, 413]
        if not route.path.startswith("/health"):
            common += [503, 504]
        for status, answer in errors(*common).items():
            route.responses.setdefault(status, answer)
        success = route.responses.setdefault(route.status_code or 200, {})
        success["headers"] = {**REQUEST_ID, **(RATE_LIMIT if limited else {})}
