"""How a job can fail: by default an error may pass on a later attempt; a PermanentError cannot."""

from __future__ import annotations


class PermanentError(Exception):
    """The job can never succeed as it is (a refused address, a malformed request): it goes to
    the dead-letter stream at once instead of being retried."""
