from __future__ import annotations

import pytest

from meshplate_core.errors import InvalidArgumentError
from users.domain.users import normalize_email, parse_registration

VALID = {"name": "Ann Lee", "username": "ann", "email": "ann@example.com", "password": "12345678"}


def test_valid_registration_is_accepted() -> None:
    registration = parse_registration(**VALID)

    assert registration.username == "ann"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "A"),
        ("name", "x" * 31),
        ("username", "a"),
        ("username", "x" * 21),
        ("username", "Ann"),
        ("username", "ann-lee"),
        ("username", "ánn"),
        ("email", "not-an-email"),
        ("email", "a@b"),
        ("password", "1234567"),
        ("password", "x" * 129),
    ],
)
def test_each_broken_rule_names_its_field(field: str, value: str) -> None:
    with pytest.raises(InvalidArgumentError) as err:
        parse_registration(**{**VALID, field: value})

    assert err.value.field == field


def test_email_is_stored_in_one_canonical_form() -> None:
    assert normalize_email("Ann.Lee@Example.COM") == "ann.lee@example.com"


def test_unicode_email_is_accepted_and_normalized() -> None:
    assert normalize_email("Jörg@Bücher.example") == "jörg@bücher.example"
