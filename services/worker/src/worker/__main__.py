"""`python -m worker`: consume the job streams and serve /health (uvicorn runs the lifespan)."""

import uvicorn

from meshplate_core.process import load_settings
from worker.app import build_app
from worker.settings import Settings

if __name__ == "__main__":
    settings = load_settings("worker", Settings)
    uvicorn.run(
        build_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        loop="uvloop",
        log_config=None,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
    )
