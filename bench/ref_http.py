"""`ref-http`: the bare FastAPI route the gateway's `/health` is compared with, served by uvicorn
as the gateway is (uvloop, httptools, one process per core) from the project's own environment,
with no logging.

`python -m bench.ref_http <port>` serves it; `serving()` runs that for a block.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from bench.child import serving as serving_child
from meshplate_testing.servers import free_port


def create_app() -> FastAPI:
    """One route answering a small JSON object."""
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "healthy"}

    return app


@asynccontextmanager
async def serving() -> AsyncIterator[tuple[int, int]]:
    """The reference server for a block: (its port, its pid)."""
    port = free_port()
    async with serving_child([sys.executable, "-m", "bench.ref_http", str(port)], port=port) as pid:
        yield port, pid


if __name__ == "__main__":
    # As many processes as the gateway of `make run` (one per core): like for like.
    uvicorn.run(
        "bench.ref_http:create_app",
        factory=True,
        workers=os.cpu_count() or 1,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )
