"""One small client per peer: it owns the stub, makes every call through a
`meshplate_core.channels.Caller` (the deadline, the request id and forwarded token, retries by
the channel for idempotent RPCs), and converts replies to the REST schemas, so routes never touch
protobuf."""

from gateway.clients.auth import AuthClient
from gateway.clients.health import HealthClient
from gateway.clients.ratelimit import RateLimitClient
from gateway.clients.users import UsersClient

__all__ = ["AuthClient", "HealthClient", "RateLimitClient", "UsersClient"]
