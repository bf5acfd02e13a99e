"""The domain error hierarchy, shared by every service and free of any transport.

Services subclass these in their `domain.py` with a message that is safe to show a client; the gRPC
bootstrap maps each base class to one status code (by walking the MRO), and nothing else does.

    DomainError                  -> FAILED_PRECONDITION (a rule of the data forbids it)
    ├── InvalidArgumentError     -> INVALID_ARGUMENT
    ├── NotFoundError            -> NOT_FOUND
    ├── AlreadyExistsError       -> ALREADY_EXISTS
    ├── ConflictError            -> ABORTED (the state of the data forbids it now: 409)
    ├── UnauthenticatedError     -> UNAUTHENTICATED
    ├── PermissionDeniedError    -> PERMISSION_DENIED
    ├── ResourceExhaustedError   -> RESOURCE_EXHAUSTED
    └── UnavailableError         -> UNAVAILABLE
"""

from __future__ import annotations


class DomainError(Exception):
    """A request broke a rule of the domain; the message is safe to show the caller."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidArgumentError(DomainError):
    """A field of the request is malformed; `field` names it when one field is to blame."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotFoundError(DomainError):
    """The thing asked for does not exist (or is deleted)."""


class AlreadyExistsError(DomainError):
    """A unique value (a name, an e-mail) is already taken."""


class ConflictError(DomainError):
    """The current state of other data forbids the change (a tier that users are still on)."""


class UnauthenticatedError(DomainError):
    """Credentials or a token are missing, wrong, expired or revoked."""


class PermissionDeniedError(DomainError):
    """The caller is known but may not do this."""


class ResourceExhaustedError(DomainError):
    """A quota is used up; `retry_after_s` says when to try again."""

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class UnavailableError(DomainError):
    """A dependency this service needs is down; the caller may retry later."""
