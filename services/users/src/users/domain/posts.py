"""Posts: what a post is, the rules a new post and a change obey, and its errors."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from meshplate_core.errors import NotFoundError
from users.domain.fields import check_length, check_url

TITLE_LENGTH = (2, 30)
TEXT_LENGTH = (1, 63206)


@dataclass(frozen=True, slots=True)
class Post:
    """A post as stored."""

    id: int
    uuid: str
    title: str
    text: str
    media_url: str | None
    created_by_user_id: int
    created_at: datetime
    updated_at: datetime | None


@dataclass(frozen=True, slots=True)
class NewPost:
    """A validated post to create."""

    title: str
    text: str
    media_url: str | None


@dataclass(frozen=True, slots=True)
class PostChanges:
    """A validated post update: only the fields that are set change."""

    title: str | None = None
    text: str | None = None
    media_url: str | None = None

    def as_dict(self) -> dict[str, str]:
        """The fields to write."""
        fields = {"title": self.title, "text": self.text, "media_url": self.media_url}
        return {key: value for key, value in fields.items() if value is not None}


class PostNotFoundError(NotFoundError):
    """No live post has this id under this author."""

    def __init__(self) -> None:
        super().__init__("Post not found")


def parse_post(*, title: str, text: str, media_url: str | None) -> NewPost:
    """Validate a new post."""
    check_length("title", title, TITLE_LENGTH)
    check_length("text", text, TEXT_LENGTH)
    return NewPost(
        title=title,
        text=text,
        media_url=check_url("media_url", media_url) if media_url is not None else None,
    )


def parse_post_changes(
    *, title: str | None = None, text: str | None = None, media_url: str | None = None
) -> PostChanges:
    """Validate a post update; fields left None stay as they are."""
    if title is not None:
        check_length("title", title, TITLE_LENGTH)
    if text is not None:
        check_length("text", text, TEXT_LENGTH)
    return PostChanges(
        title=title,
        text=text,
        media_url=check_url("media_url", media_url) if media_url is not None else None,
    )
