"""Which tier each user is on now, projected from the users service's `users.tier_changed` events.

Every replica follows the whole stream (replayed at start), so a tier change governs a user's next
requests within milliseconds, without a new token and without a call per request. A user with no
event since the stream's trimming point is on the tier their token names.
"""

from __future__ import annotations

from meshplate_core.events import UserTierChanged


class TierProjection:
    """user id -> tier id, from the events."""

    def __init__(self) -> None:
        self._tiers: dict[int, int | None] = {}

    def apply(self, event: UserTierChanged) -> None:
        """Record one change."""
        self._tiers[event.user_id] = event.tier_id

    def tier_of(self, subject: str, token_tier: int | None) -> int | None:
        """The current tier of a `user:<id>` subject (the token's when no change is known)."""
        kind, _, raw_id = subject.partition(":")
        if kind != "user" or not raw_id.isdigit():
            return token_tier
        return self._tiers.get(int(raw_id), token_tier)
