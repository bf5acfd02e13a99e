"""Pages: how every listing of the service is cut."""

from __future__ import annotations

from dataclasses import dataclass

from meshplate_core.errors import InvalidArgumentError

MAX_PAGE_SIZE = 100


@dataclass(frozen=True, slots=True)
class PageRequest:
    """A validated page: 1-based `page`, `size` items."""

    page: int
    size: int

    @property
    def offset(self) -> int:
        """Rows to skip."""
        return (self.page - 1) * self.size


def parse_page(page: int, size: int) -> PageRequest:
    """A page request within bounds (page >= 1, 1 <= size <= 100)."""
    if page < 1:
        raise InvalidArgumentError("page must be at least 1", field="page")
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise InvalidArgumentError(
            f"items_per_page must be 1 to {MAX_PAGE_SIZE}", field="items_per_page"
        )
    return PageRequest(page=page, size=size)
