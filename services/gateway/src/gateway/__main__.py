"""`python -m gateway`: serve the REST API with uvicorn (uvloop, httptools)."""

from gateway.app import create_app
from gateway.settings import Settings
from meshplate_core.http_server import serve_http
from meshplate_core.process import load_settings

if __name__ == "__main__":
    settings = load_settings("gateway", Settings)
    serve_http(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        grace_s=settings.shutdown_grace_s,
    )
