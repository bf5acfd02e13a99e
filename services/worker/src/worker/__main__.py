"""`python -m worker`: consume the job streams, run the schedules, serve /health (uvicorn runs
the lifespan)."""

from meshplate_core.http_server import serve_http
from meshplate_core.process import load_settings
from worker.app import build_app
from worker.settings import Settings

if __name__ == "__main__":
    settings = load_settings("worker", Settings)
    serve_http(
        build_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        grace_s=settings.shutdown_grace_s,
    )
