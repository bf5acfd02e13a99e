"""What every view of the panel shares: its rows come from a service a page at a time, whoever
acts is the signed-in superuser, and what goes wrong is a message or an error page, never a 500.

- `page()` is the one thing a view must say about listing; `find_all` turns starlette-admin's
  skip and limit into pages (a limit below 0, "select all", is every page) and `count` asks for
  the total.
- `record()` finds one row; `find_by_pk` makes a missing or malformed key "not found".
- A failed call becomes an HTTP error page with the REST API's status and words (Redis out: 503).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette_admin import BaseModelView
from starlette_admin.filters import FilterGroup

from gateway.admin.problems import SHOWN, describe
from gateway.clients import UsersClient
from gateway.errors import HTTP_STATUS
from meshplate_core.errors import DomainError
from meshplate_core.interceptors import status_for
from meshplate_core.redis_client import REDIS_FAILURES
from meshplate_core.tokens import Claims

# The largest page a service answers; "select all" reads this many at a time.
PAGE_MAX = 100
_INT64_MAX = 2**63 - 1
_INT32_MAX = 2**31 - 1


def acting(request: Request) -> Claims:
    """The signed-in superuser, as whom the panel calls the services."""
    claims: Claims = request.state.admin_claims
    return claims


def users_client(request: Request) -> UsersClient:
    """The gateway's client of the users service."""
    client: UsersClient = request.state.users
    return client


def int_pk(value: Any) -> int | None:
    """A numeric key, or None for anything else (letters, signs, digits of other scripts, more
    than an int64)."""
    text = str(value)
    if not text.isascii() or not text.isdecimal() or int(text) > _INT64_MAX:
        return None
    return int(text)


def error_page(exc: grpc.aio.AioRpcError | DomainError) -> HTTPException:
    """The error page of a failed call: the REST API's status and words."""
    code = exc.code() if isinstance(exc, grpc.aio.AioRpcError) else status_for(exc)
    return HTTPException(HTTP_STATUS.get(code, 500), describe(exc))


class RemoteView(BaseModelView):
    """A view whose rows a service holds."""

    sortable_fields: Sequence[str] = ()
    exporters: Sequence[Any] = ()
    importers: Sequence[Any] = ()
    page_size = 25

    async def page(
        self, request: Request, number: int, size: int, q: str | None
    ) -> tuple[Sequence[Any], int]:
        """Page `number` (from 1) of `size` rows matching `q`, and how many match in all."""
        raise NotImplementedError

    async def record(self, request: Request, pk: Any) -> Any:
        """The row `pk` names, or None."""
        raise NotImplementedError

    async def find_all(
        self,
        request: Request,
        skip: int = 0,
        limit: int = 100,
        q: str | None = None,
        sorts: Sequence[tuple[str, str]] | None = None,
        filters: FilterGroup | None = None,
    ) -> Sequence[Any]:
        try:
            if limit < 0:
                return await self._every(request, q)
            size = max(1, min(limit, PAGE_MAX))
            number = skip // size + 1
            if number > _INT32_MAX:
                return []
            rows, _total = await self.page(request, number, size, q)
        except SHOWN as exc:
            raise error_page(exc) from None
        except REDIS_FAILURES:
            raise HTTPException(503, "Redis is not available") from None
        return rows

    async def _every(self, request: Request, q: str | None) -> list[Any]:
        rows: list[Any] = []
        number = 1
        while True:
            found, total = await self.page(request, number, PAGE_MAX, q)
            rows += found
            if not found or len(rows) >= total:
                return rows
            number += 1

    async def count(
        self, request: Request, q: str | None = None, filters: FilterGroup | None = None
    ) -> int:
        try:
            _rows, total = await self.page(request, 1, 1, q)
        except SHOWN as exc:
            raise error_page(exc) from None
        except REDIS_FAILURES:
            raise HTTPException(503, "Redis is not available") from None
        return total

    async def find_by_pk(self, request: Request, pk: Any) -> Any:
        try:
            return await self.record(request, pk)
        except SHOWN as exc:
            if isinstance(exc, grpc.aio.AioRpcError) and exc.code() is grpc.StatusCode.NOT_FOUND:
                return None
            raise error_page(exc) from None
        except REDIS_FAILURES:
            raise HTTPException(503, "Redis is not available") from None

    async def find_by_pks(self, request: Request, pks: list[Any]) -> Sequence[Any]:
        found = [await self.find_by_pk(request, pk) for pk in pks]
        return [row for row in found if row is not None]

    async def create(self, request: Request, data: dict[str, Any]) -> Any:
        raise NotImplementedError("not made in the panel")

    async def edit(self, request: Request, pk: Any, data: dict[str, Any]) -> Any:
        raise NotImplementedError("not changed in the panel")

    async def delete(self, request: Request, pks: list[Any]) -> int | None:
        raise NotImplementedError("not deleted in the panel")


class FormlessView(RemoteView):
    """A view whose rows are listed and shown (and maybe deleted), never created or edited."""

    def can_create(self, request: Request) -> bool:
        return False

    def can_edit(self, request: Request) -> bool:
        return False
