"""Which unique constraint a failed insert or update broke, whatever the database."""

from __future__ import annotations

import re

from sqlalchemy.exc import IntegrityError

# SQLite names the columns, not the constraint: "UNIQUE constraint failed: user.email".
_SQLITE_UNIQUE = re.compile(r"UNIQUE constraint failed: (\w+)\.(\w+)")


def violated_unique(exc: IntegrityError) -> str | None:
    """The name of the violated unique constraint (`uq_<table>_<column>`), if that was the cause."""
    cause = exc.orig.__cause__ if exc.orig is not None else None
    constraint = getattr(cause, "constraint_name", None)  # asyncpg
    if isinstance(constraint, str):
        return constraint
    match = _SQLITE_UNIQUE.search(str(exc.orig))
    return f"uq_{match[1]}_{match[2]}" if match else None
