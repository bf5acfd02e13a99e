"""Actors: the end user a write is made for, and what they may change."""

from __future__ import annotations

from dataclasses import dataclass

from meshplate_core.errors import PermissionDeniedError


class NotAllowedError(PermissionDeniedError):
    """The actor is neither the owner (of the profile, of the post) nor a superuser, or the change
    is a superuser's only."""

    def __init__(self) -> None:
        super().__init__("You do not have enough privileges.")


class OwnRightsError(PermissionDeniedError):
    """A superuser tried to change their own rights (the last one could lock everyone out)."""

    def __init__(self) -> None:
        super().__init__("Superusers cannot change their own rights.")


@dataclass(frozen=True, slots=True)
class Actor:
    """The verified end user a write is made for; the service decides what they may change."""

    user_id: int
    is_superuser: bool

    def may_change(self, owner_id: int) -> bool:
        """Users change themselves and their own posts; superusers change anyone's."""
        return self.is_superuser or self.user_id == owner_id

    def require_owner(self, owner_id: int) -> None:
        """NotAllowedError unless the actor may change what `owner_id` owns."""
        if not self.may_change(owner_id):
            raise NotAllowedError()

    def require_superuser(self) -> None:
        """NotAllowedError unless the actor is a superuser."""
        if not self.is_superuser:
            raise NotAllowedError()
