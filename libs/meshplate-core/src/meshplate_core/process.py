"""A process's `main`: load settings, configure logging, run the chosen command, exit cleanly.

`python -m users` serves; `python -m users migrate` applies migrations and exits. Every command
runs on uvloop (grpc.aio, asyncpg and redis-py all run on it; it spends less per event), its
start-up heap settled (meshplate_core.heap). Bad settings or a failed start end the process
with one readable line and a non-zero exit code, not a traceback.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

import uvloop
from pydantic import ValidationError

from meshplate_core import heap
from meshplate_core.logging import configure_logging
from meshplate_core.settings import ServiceSettings
from meshplate_core.tracing import configure_tracing

log = logging.getLogger(__name__)

S = TypeVar("S", bound=ServiceSettings)


def load_settings(service: str, load: Callable[[], S], *, grpc: bool = False) -> S:
    """Settings from the environment, with logging configured; invalid ones exit with code 2,
    as do missing TLS files for a process that speaks gRPC (`grpc`)."""
    try:
        settings = load()
        if grpc:
            settings.tls()
    except (ValidationError, ValueError) as exc:
        if isinstance(exc, ValidationError):
            reason = "; ".join(
                f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in exc.errors()
            )
        else:
            reason = str(exc)
        print(f"{service}: invalid settings: {reason}", file=sys.stderr)  # noqa: T201
        raise SystemExit(2) from None
    configure_logging(service=service, level=settings.log_level, json_lines=settings.log_json)
    configure_tracing(service)
    return settings


def run_service(
    *,
    service: str,
    load: Callable[[], S],
    commands: Mapping[str, Callable[[S], Coroutine[Any, Any, None]]],
    argv: Sequence[str],
) -> int:
    """Run `commands[argv[0]]` (the first command when argv is empty); return the exit code."""
    name = argv[0] if argv else next(iter(commands))
    if name not in commands or len(argv) > 1:
        print(f"usage: python -m {service} [{'|'.join(commands)}]", file=sys.stderr)  # noqa: T201
        return 2
    # Serving speaks gRPC (mutual TLS); migrating does not.
    settings = load_settings(service, load, grpc=name == "serve")
    heap.settle()
    try:
        uvloop.run(commands[name](settings))
    except KeyboardInterrupt:
        return 0
    except Exception:
        log.exception("%s %s failed", service, name)
        return 1
    return 0
