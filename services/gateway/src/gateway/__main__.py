"""`python -m gateway`: serve the REST API with uvicorn (uvloop, httptools)."""

import uvicorn

from gateway.app import create_app
from gateway.settings import Settings
from meshplate_core.process import load_settings

if __name__ == "__main__":
    settings = load_settings("gateway", Settings)
    # On SIGTERM uvicorn stops accepting, then lets in-flight requests finish within the grace.
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
    )
