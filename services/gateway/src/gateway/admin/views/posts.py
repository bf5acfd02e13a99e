"""A user's posts in the panel: search by the author's username, read a post, delete it (the REST
API's soft delete, as the signed-in superuser)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc
from starlette.requests import Request
from starlette_admin import DateTimeField, IntegerField, StringField, TextAreaField
from starlette_admin.exceptions import ActionFailed

from gateway.admin.problems import as_message
from gateway.admin.views.remote import FormlessView, acting, int_pk, users_client
from gateway.schemas import USERNAME_PATTERN, PostRead


@dataclass(frozen=True)
class PostRow:
    """A post as the panel shows it; `key` names it with its author (`<username>-<post id>`)."""

    key: str
    id: int
    author: str
    title: str
    text: str
    created_at: datetime

    def __admin_repr__(self, request: Request) -> str:
        return self.title


def _row(author: str, post: PostRead) -> PostRow:
    return PostRow(f"{author}-{post.id}", post.id, author, post.title, post.text, post.created_at)


def _parse_key(pk: Any) -> tuple[str, int] | None:
    author, _, post = str(pk).rpartition("-")
    post_id = int_pk(post)
    return (author, post_id) if USERNAME_PATTERN.fullmatch(author) and post_id else None


def _author(q: str | None) -> str | None:
    """The author a search names (a username), if it names one."""
    username = (q or "").strip().lower()
    return username if USERNAME_PATTERN.fullmatch(username) else None


class PostsView(FormlessView):
    """The posts of the user the search names."""

    key = "posts"
    menu_label = "Posts"
    icon = "fa fa-file-lines"
    pk_attr = "key"
    fields = (
        IntegerField("id", label="Id"),
        StringField("author"),
        StringField("title"),
        TextAreaField("text", exclude_from_list=True),
        DateTimeField("created_at", label="Written"),
    )
    searchable_fields = ("author",)
    row_actions = ("view", "delete")

    async def page(
        self, request: Request, number: int, size: int, q: str | None
    ) -> tuple[Sequence[Any], int]:
        if (author := _author(q)) is None:
            return [], 0
        try:
            posts, total = await users_client(request).list_posts(author, number, size)
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.NOT_FOUND:  # no such author
                return [], 0
            raise
        return [_row(author, post) for post in posts], total

    async def record(self, request: Request, pk: Any) -> Any:
        if (ids := _parse_key(pk)) is None:
            return None
        author, post_id = ids
        return _row(author, await users_client(request).get_post(post_id, author))

    async def delete(self, request: Request, pks: list[Any]) -> int | None:
        for pk in pks:
            if (ids := _parse_key(pk)) is None:
                raise ActionFailed("No such post.")
            author, post_id = ids
            with as_message():
                await users_client(request).delete_post(
                    acting(request), post_id, author, hard=False
                )
        return len(pks)
