"""Users in the panel: the live ones (search by name, username or e-mail; a page at a time; a
user's record; change of tier; superuser rights; soft delete) and the soft-deleted ones (restore;
delete for good, after a confirmation). Every action is the RPC the REST API makes, as the
signed-in superuser, so its events (a tier change reaching ratelimit, a deletion revoking tokens)
follow as they do there."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
from markupsafe import escape
from starlette.requests import Request
from starlette_admin import (
    BooleanField,
    DateTimeField,
    EmailField,
    IntegerField,
    StringField,
    row_action,
)
from starlette_admin.exceptions import ActionFailed

from gateway.admin.problems import as_message, succeeded
from gateway.admin.views.remote import FormlessView, acting, int_pk, users_client
from meshplate.users.v1 import users_pb2


@dataclass(frozen=True)
class Account:
    """A user as the panel shows them."""

    id: int
    username: str
    name: str
    email: str
    tier: str
    is_superuser: bool
    created_at: datetime

    def __admin_repr__(self, request: Request) -> str:
        return self.username


async def tier_names(request: Request) -> dict[int, str]:
    """Every tier's name by id (read once per request)."""
    cached: dict[int, str] | None = getattr(request.state, "tier_names", None)
    if cached is not None:
        return cached
    names: dict[int, str] = {}
    page = 1
    while True:
        tiers, total = await users_client(request).list_tiers(page, 100)
        names.update({tier.id: tier.name for tier in tiers})
        if not tiers or len(names) >= total:
            request.state.tier_names = names
            return names
        page += 1


def _account(user: users_pb2.User, tiers: dict[int, str]) -> Account:
    tier = tiers.get(user.tier_id, f"#{user.tier_id}") if user.HasField("tier_id") else ""
    return Account(
        id=user.id,
        username=user.username,
        name=user.name,
        email=user.email,
        tier=tier,
        is_superuser=user.is_superuser,
        created_at=user.created_at.ToDatetime(tzinfo=UTC),
    )


def _user_id(pk: Any) -> int:
    if (user_id := int_pk(pk)) is None:
        raise ActionFailed("No such user.")
    return user_id


class _Accounts(FormlessView):
    """What both views of users share: their fields, their listing, a record."""

    pk_attr = "id"
    fields = (
        IntegerField("id", label="Id"),
        StringField("username"),
        StringField("name"),
        EmailField("email", label="E-mail"),
        StringField("tier"),
        BooleanField("is_superuser", label="Superuser"),
        DateTimeField("created_at", label="Signed up"),
    )
    searchable_fields = ("username", "name", "email")
    # Soft-deleted users, or live ones.
    deleted = False

    async def page(
        self, request: Request, number: int, size: int, q: str | None
    ) -> tuple[Sequence[Any], int]:
        users, total = await users_client(request).accounts(
            acting(request), number, size, query=q or "", deleted=self.deleted
        )
        tiers = await tier_names(request)
        return [_account(user, tiers) for user in users], total

    async def record(self, request: Request, pk: Any) -> Any:
        if (user_id := int_pk(pk)) is None:
            return None
        user = await self._user(request, user_id)
        return None if user is None else _account(user, await tier_names(request))

    async def _user(self, request: Request, user_id: int) -> users_pb2.User | None:
        """The user, if they are one of this view's (live, or soft-deleted)."""
        client = users_client(request)
        if not self.deleted:
            return await client.account(user_id)
        user = await client.account(user_id, include_deleted=True)
        try:
            await client.account(user_id)
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.NOT_FOUND:
                return user  # not live: soft-deleted
            raise
        return None


class UsersView(_Accounts):
    """Live users: change of tier, superuser rights, soft delete."""

    key = "users"
    menu_label = "Users"
    icon = "fa fa-users"
    row_actions = ("view", "change_tier", "grant", "revoke", "delete")

    async def is_row_action_allowed_for_obj(self, request: Request, name: str, obj: Any) -> bool:
        # Only the rights change that applies, and never one's own.
        if name in ("grant", "revoke"):
            own = obj.id == acting(request).user_id
            return not own and obj.is_superuser == (name == "revoke")
        return True

    async def delete(self, request: Request, pks: list[Any]) -> int | None:
        """Soft-delete (the user's tokens are revoked; a superuser may restore them)."""
        for pk in pks:
            with as_message():
                await users_client(request).delete_user(acting(request), _user_id(pk), hard=False)
        return len(pks)

    @row_action(
        name="change_tier",
        text="Change tier",
        confirmation="Move this user to another tier: their limits change at their next request.",
        submit_btn_text="Change tier",
        icon_class="fa fa-layer-group",
        form=lambda request, obj: _tier_form(request),
    )
    async def change_tier(self, request: Request, pk: Any) -> str:
        tier_id = int_pk((await request.form()).get("tier_id", ""))
        if tier_id is None:
            raise ActionFailed("Choose a tier.")
        with as_message():
            await users_client(request).set_tier(acting(request), _user_id(pk), tier_id)
        return succeeded(request, "Tier changed.")

    @row_action(
        name="grant",
        text="Make superuser",
        confirmation="Give this user every right? Their tokens are revoked: they log in again.",
        submit_btn_text="Make superuser",
        icon_class="fa fa-user-shield",
    )
    async def grant(self, request: Request, pk: Any) -> str:
        return await _set_superuser(request, _user_id(pk), True)

    @row_action(
        name="revoke",
        text="Take superuser rights",
        confirmation="Take this user's superuser rights? Their tokens and panel sessions end.",
        submit_btn_text="Take rights",
        icon_class="fa fa-user-minus",
    )
    async def revoke(self, request: Request, pk: Any) -> str:
        return await _set_superuser(request, _user_id(pk), False)


async def _set_superuser(request: Request, user_id: int, flag: bool) -> str:
    with as_message():
        await users_client(request).set_superuser(acting(request), user_id, flag)
    return succeeded(request, "Superuser rights given." if flag else "Superuser rights taken.")


async def _tier_form(request: Request) -> str:
    options = "".join(
        f'<option value="{tier_id}">{escape(name)}</option>'
        for tier_id, name in sorted((await tier_names(request)).items(), key=lambda t: t[1])
    )
    # starlette-admin submits the <form> of a row action's modal.
    return (
        '<form><label class="form-label" for="tier_id">Tier</label>'
        f'<select class="form-select" name="tier_id" id="tier_id">{options}</select></form>'
    )


class DeletedUsersView(_Accounts):
    """Soft-deleted users: restore, or remove for good."""

    key = "deleted-users"
    menu_label = "Deleted users"
    icon = "fa fa-user-slash"
    deleted = True
    row_actions = ("view", "restore", "erase")

    def can_delete(self, request: Request) -> bool:
        return False

    @row_action(
        name="restore",
        text="Restore",
        confirmation="Make this user live again? They log in again: their tokens stay revoked.",
        submit_btn_text="Restore",
        icon_class="fa fa-trash-arrow-up",
    )
    async def restore(self, request: Request, pk: Any) -> str:
        with as_message():
            await users_client(request).restore_user(acting(request), _user_id(pk))
        return succeeded(request, "User restored.")

    @row_action(
        name="erase",
        text="Delete for good",
        confirmation="Remove this user and all their posts for good? This cannot be undone.",
        submit_btn_text="Delete for good",
        submit_btn_class="btn btn-danger",
        icon_class="fa fa-eraser",
    )
    async def erase(self, request: Request, pk: Any) -> str:
        user_id = _user_id(pk)
        with as_message():
            # Only a user still deleted (another operator may have restored them meanwhile).
            if await self._user(request, user_id) is None:
                raise ActionFailed("This user is not deleted (any more).")
            await users_client(request).delete_user(acting(request), user_id, hard=True)
        return succeeded(request, "User deleted for good.")
