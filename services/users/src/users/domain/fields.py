"""The rules that fields of several nouns share: lengths and URLs."""

from __future__ import annotations

from urllib.parse import urlsplit

from meshplate_core.errors import InvalidArgumentError

URL_MAX_LENGTH = 2048


def check_length(field: str, value: str, bounds: tuple[int, int]) -> None:
    """InvalidArgumentError naming `field` unless `value` is `bounds` characters long (inclusive)."""
    low, high = bounds
    if not low <= len(value) <= high:
        raise InvalidArgumentError(f"{field} must be {low} to {high} characters long", field=field)


def check_url(field: str, url: str) -> str:
    """An absolute http(s) URL, or InvalidArgumentError naming `field`."""
    parts = urlsplit(url)
    if (
        len(url) > URL_MAX_LENGTH
        or parts.scheme not in ("http", "https")
        or not parts.netloc
        or any(c.isspace() for c in url)
    ):
        raise InvalidArgumentError(f"{field} must be an http or https URL", field=field)
    return url
