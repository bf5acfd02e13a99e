"""`python -m worker`: consume the job streams, run the schedules, serve /health.

`python -m worker dead <kind>` lists a kind's dead jobs; `python -m worker replay <kind> [entry
id ...]` puts them (all, or the given ones) back on their stream.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from meshplate_core.dead_letters import count_dead, list_dead, replay
from meshplate_core.http_server import serve_http
from meshplate_core.jobs import JobStore
from meshplate_core.process import load_settings
from meshplate_core.redis_client import connect
from worker.app import build_app
from worker.settings import Settings


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m worker")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="consume the job streams (the default)")
    dead = commands.add_parser("dead", help="list a kind's dead jobs, oldest first")
    dead.add_argument("kind", help="the job kind, such as welcome-email")
    dead.add_argument("--count", type=int, default=100, help="at most this many (default 100)")
    again = commands.add_parser("replay", help="put a kind's dead jobs back on their stream")
    again.add_argument("kind")
    again.add_argument("entry_ids", nargs="*", help="dead-letter entry ids (default: all)")
    return parser.parse_args(argv)


async def _dead_letters(settings: Settings, arguments: argparse.Namespace) -> None:
    jobs = JobStore(connect(settings.redis_url), ttl_s=settings.job_ttl_s)
    try:
        if arguments.command == "dead":
            entries = await list_dead(jobs, arguments.kind, count=arguments.count)
            for entry in entries:
                print(  # noqa: T201
                    f"{entry.entry_id}\t{entry.job_id}\t{entry.attempts} attempts\t{entry.at}\t"
                    f"{entry.error}"
                )
            total = await count_dead(jobs, arguments.kind)
            if total > len(entries):
                print(f"... {total - len(entries)} more (--count)")  # noqa: T201
        else:
            count = await replay(jobs, arguments.kind, arguments.entry_ids)
            print(f"replayed {count} dead {arguments.kind} jobs")  # noqa: T201
    finally:
        await jobs.close()


def main(argv: list[str]) -> None:
    """Serve, or work on the dead-letter streams."""
    arguments = _arguments(argv)
    settings = load_settings("worker", Settings, grpc=arguments.command not in ("dead", "replay"))
    if arguments.command in ("dead", "replay"):
        asyncio.run(_dead_letters(settings, arguments))
        return
    serve_http(
        build_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        grace_s=settings.shutdown_grace_s,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
