"""One small client per peer: it owns the stub, the deadline and the request id of each call,
and converts replies to the REST schemas, so routes never touch protobuf."""

from gateway.clients.auth import AuthClient
from gateway.clients.health import HealthClient
from gateway.clients.ratelimit import RateLimitClient
from gateway.clients.users import UsersClient

__all__ = ["AuthClient", "HealthClient", "RateLimitClient", "UsersClient"]
