"""Posts through the real gRPC contract: ownership where the data lives, and listing."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
import pytest

from meshplate.users.v1 import users_pb2

from .conftest import Person, person, sign_up, status_of

if TYPE_CHECKING:
    from meshplate.users.v1.users_pb2_grpc import UsersServiceAsyncStub


async def _post(
    users: UsersServiceAsyncStub, actor: Person, title: str = "Hello"
) -> users_pb2.Post:
    reply = await users.CreatePost(
        users_pb2.CreatePostRequest(author_id=actor.user_id, title=title, text="Body"),
        metadata=actor.metadata,
    )
    return reply.post


async def test_post_is_created_and_read_under_its_author(users: UsersServiceAsyncStub) -> None:
    ann = await sign_up(users, "ann")

    created = await _post(users, ann)
    read = (
        await users.GetPost(users_pb2.GetPostRequest(id=created.id, author_username="ann"))
    ).post

    assert read == created
    assert (read.title, read.created_by_user_id) == ("Hello", ann.user_id)


async def test_post_under_another_username_is_not_found(users: UsersServiceAsyncStub) -> None:
    ann, _bob = await sign_up(users, "ann"), await sign_up(users, "bob")
    post = await _post(users, ann)

    code = await status_of(
        users.GetPost(users_pb2.GetPostRequest(id=post.id, author_username="bob"))
    )

    assert code is grpc.StatusCode.NOT_FOUND


async def test_only_the_author_or_a_superuser_writes_a_post(users: UsersServiceAsyncStub) -> None:
    ann, bob = await sign_up(users, "ann"), await sign_up(users, "bob")
    post = await _post(users, ann)

    for_someone_else = await status_of(
        users.CreatePost(
            users_pb2.CreatePostRequest(author_id=ann.user_id, title="Hi", text="x"),
            metadata=bob.metadata,
        )
    )
    bob_edits = await status_of(
        users.UpdatePost(
            users_pb2.UpdatePostRequest(id=post.id, author_username="ann", title="Mine"),
            metadata=bob.metadata,
        )
    )
    bob_deletes = await status_of(
        users.DeletePost(
            users_pb2.DeletePostRequest(id=post.id, author_username="ann"), metadata=bob.metadata
        )
    )
    unchanged = (
        await users.GetPost(users_pb2.GetPostRequest(id=post.id, author_username="ann"))
    ).post
    root_edits = await users.UpdatePost(
        users_pb2.UpdatePostRequest(id=post.id, author_username="ann", title="Fixed"),
        metadata=person(1, superuser=True).metadata,
    )

    assert {for_someone_else, bob_edits, bob_deletes} == {grpc.StatusCode.PERMISSION_DENIED}
    assert unchanged.title == "Hello"
    assert root_edits.post.title == "Fixed"


async def test_hard_delete_is_for_superusers(users: UsersServiceAsyncStub) -> None:
    ann = await sign_up(users, "ann")
    post = await _post(users, ann)

    by_author = await status_of(
        users.DeletePost(
            users_pb2.DeletePostRequest(id=post.id, author_username="ann", hard=True),
            metadata=ann.metadata,
        )
    )
    await users.DeletePost(
        users_pb2.DeletePostRequest(id=post.id, author_username="ann", hard=True),
        metadata=person(1, superuser=True).metadata,
    )

    assert by_author is grpc.StatusCode.PERMISSION_DENIED
    assert (
        await status_of(users.GetPost(users_pb2.GetPostRequest(id=post.id, author_username="ann")))
        is grpc.StatusCode.NOT_FOUND
    )


async def test_list_is_newest_first_in_pages(users: UsersServiceAsyncStub) -> None:
    ann = await sign_up(users, "ann")
    for title in ("one", "two", "three"):
        await _post(users, ann, title)

    first = await users.ListPosts(
        users_pb2.ListPostsRequest(author_username="ann", page=1, items_per_page=2)
    )
    second = await users.ListPosts(
        users_pb2.ListPostsRequest(author_username="ann", page=2, items_per_page=2)
    )
    past = await users.ListPosts(
        users_pb2.ListPostsRequest(author_username="ann", page=9, items_per_page=2)
    )

    assert [p.title for p in first.posts] == ["three", "two"]
    assert [p.title for p in second.posts] == ["one"]
    assert (first.total_count, past.total_count, list(past.posts)) == (3, 3, [])


async def test_listing_a_missing_author_is_not_found(users: UsersServiceAsyncStub) -> None:
    code = await status_of(
        users.ListPosts(
            users_pb2.ListPostsRequest(author_username="nobody", page=1, items_per_page=10)
        )
    )

    assert code is grpc.StatusCode.NOT_FOUND


async def test_soft_deleted_posts_leave_the_list(users: UsersServiceAsyncStub) -> None:
    ann = await sign_up(users, "ann")
    keep, drop = await _post(users, ann, "keep"), await _post(users, ann, "drop")

    await users.DeletePost(
        users_pb2.DeletePostRequest(id=drop.id, author_username="ann"), metadata=ann.metadata
    )
    listed = await users.ListPosts(
        users_pb2.ListPostsRequest(author_username="ann", page=1, items_per_page=10)
    )

    assert [p.id for p in listed.posts] == [keep.id]
    assert listed.total_count == 1


async def test_a_users_hard_delete_removes_their_posts(users: UsersServiceAsyncStub) -> None:
    ann = await sign_up(users, "ann")
    await _post(users, ann)

    await users.DeleteUser(users_pb2.DeleteUserRequest(id=ann.user_id, hard=True))
    again = await sign_up(users, "ann")
    listed = await users.ListPosts(
        users_pb2.ListPostsRequest(author_username="ann", page=1, items_per_page=10)
    )

    assert again.user_id != ann.user_id
    assert listed.total_count == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("title", "x"),
        ("title", "x" * 31),
        ("text", ""),
        ("text", "x" * 63207),
        ("media_url", "file:///etc/passwd"),
    ],
)
async def test_invalid_posts_name_the_field(
    users: UsersServiceAsyncStub, field: str, value: str
) -> None:
    ann = await sign_up(users, "ann")
    fields = {"title": "Hello", "text": "Body", field: value}

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await users.CreatePost(
            users_pb2.CreatePostRequest(author_id=ann.user_id, **fields), metadata=ann.metadata
        )

    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert ("field", field) in tuple(err.value.trailing_metadata() or ())
