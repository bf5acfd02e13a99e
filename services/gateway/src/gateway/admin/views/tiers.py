"""Tiers in the panel: create, rename, delete. A tier still in use cannot be deleted: users' 409
is shown as a message, and nothing changes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from starlette.requests import Request
from starlette_admin import DateTimeField, IntegerField, StringField
from starlette_admin.exceptions import ActionFailed, FormValidationError

from gateway.admin.problems import SHOWN, as_message, describe, field_of
from gateway.admin.views.remote import RemoteView, acting, int_pk, users_client
from gateway.schemas import TierRead
from meshplate_core.errors import DomainError


class TiersView(RemoteView):
    """Every tier."""

    key = "tiers"
    menu_label = "Tiers"
    icon = "fa fa-layer-group"
    pk_attr = "id"
    fields = (
        IntegerField("id", label="Id", exclude_from_create=True, exclude_from_edit=True),
        StringField("name", required=True, maxlength=50),
        DateTimeField(
            "created_at", label="Created", exclude_from_create=True, exclude_from_edit=True
        ),
    )

    async def page(
        self, request: Request, number: int, size: int, q: str | None
    ) -> tuple[Sequence[Any], int]:
        return await users_client(request).list_tiers(number, size)

    async def record(self, request: Request, pk: Any) -> Any:
        if (tier_id := int_pk(pk)) is None:
            return None
        return await users_client(request).get_tier(tier_id=tier_id)

    async def create(self, request: Request, data: dict[str, Any]) -> Any:
        try:
            return await users_client(request).create_tier(acting(request), str(data["name"]))
        except SHOWN as exc:
            raise _on_the_form(exc) from None

    async def edit(self, request: Request, pk: Any, data: dict[str, Any]) -> Any:
        client = users_client(request)
        if (tier_id := int_pk(pk)) is None:
            raise ActionFailed("No such tier.")
        try:
            await client.rename_tier(acting(request), tier_id, str(data["name"]))
            tier: TierRead = await client.get_tier(tier_id=tier_id)
        except SHOWN as exc:
            raise _on_the_form(exc) from None
        return tier

    async def delete(self, request: Request, pks: list[Any]) -> int | None:
        for pk in pks:
            if (tier_id := int_pk(pk)) is None:
                raise ActionFailed("No such tier.")
            with as_message():
                await users_client(request).delete_tier(acting(request), tier_id)
        return len(pks)


def _on_the_form(exc: grpc.aio.AioRpcError | DomainError) -> FormValidationError:
    """The error under the name field (a name taken or invalid), or the form's own."""
    return FormValidationError({field_of(exc) or "name": describe(exc)})
