"""The small shared core of Meshplate's processes.

Modules, each one idea: `settings` (typed configuration), `logging` (JSON lines with the request
id), `errors` (the domain error hierarchy), `interceptors` and `grpc_server` (the grpc.aio bootstrap),
`channels` (the client channel factory), `process` (a service's `main`), `events`, `streams` and
`jobs` (the Redis streams: payloads, wire format, consumers, job records), `database`, `runner`
and `outbox` (needs the `db` extra), `tokens` (the `jwt` extra) and `http_server` (the `http`
extra). This package re-exports only what is free of any transport, so domain code may import
it.
"""

from meshplate_core.errors import (
    AlreadyExistsError,
    ConflictError,
    DomainError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
)

__all__ = [
    "AlreadyExistsError",
    "ConflictError",
    "DomainError",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "UnauthenticatedError",
    "UnavailableError",
]
