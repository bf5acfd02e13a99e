"""Builders of valid test data, written through the service's own storage."""

from __future__ import annotations

import secrets

from users.domain.users import Registration


def make_registration(**overrides: str) -> Registration:
    """A valid sign-up with random unique username and e-mail; any field may be overridden."""
    tag = secrets.token_hex(4)
    fields = {
        "name": "Test User",
        "username": f"user{tag}",
        "email": f"user{tag}@example.com",
        "password": "correct horse battery",
    }
    return Registration(**{**fields, **overrides})
