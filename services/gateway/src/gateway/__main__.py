"""`python -m gateway`: serve the REST API with uvicorn (uvloop, httptools), in GATEWAY_WORKERS
processes (one by default, which drains for GATEWAY_SHUTDOWN_DRAIN_S on SIGTERM: see
meshplate_core.http_server)."""

from gateway.settings import Settings
from meshplate_core.http_server import serve_http, serve_http_workers
from meshplate_core.process import load_settings

if __name__ == "__main__":
    settings = load_settings("gateway", Settings, grpc=True)
    if settings.workers > 1:
        serve_http_workers(
            "gateway.app:from_environment",
            workers=settings.workers,
            host=settings.host,
            port=settings.port,
            grace_s=settings.shutdown_grace_s,
        )
    else:
        from gateway.app import create_app

        serve_http(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            grace_s=settings.shutdown_grace_s,
            drain_s=settings.shutdown_drain_s,
            tls=settings.tls() if settings.https else None,
        )
