"""The admin panel at /admin (docs/admin.md): starlette-admin's views over the gRPC clients, for
superusers, signed in through auth with a server-side session in Redis."""
