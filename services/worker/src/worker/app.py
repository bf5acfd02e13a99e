"""The worker's composition root: the job kinds, their subscribers, the scheduler, /health."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from faststream.asgi import AsgiFastStream, AsgiResponse, get
from faststream.asgi.types import Scope
from faststream.redis import RedisBroker, RedisRouter
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from meshplate_core.jobs import JobStore
from meshplate_core.streams import ensure_group
from worker.clients import AUTH_SERVICE, USERS_SERVICE, AuthCalls, Peer, UsersCalls
from worker.consumers import forget_gone_consumers, say_alive
from worker.delivery import Deliveries, RetryPolicy
from worker.kind import JobKind
from worker.kinds.purge import PurgeRequested, purge_expired
from worker.kinds.report import ReportRequested, users_by_tier
from worker.kinds.sample import sample_task
from worker.kinds.welcome import welcome_email
from worker.mail import Mailer, Relay
from worker.metrics import QueueDepth, register_worker_metrics
from worker.schedule import Schedule, Scheduler
from worker.settings import Settings
from worker.subscriptions import subscribe
from worker.trimming import trim_consumed

log = logging.getLogger(__name__)


@dataclass
class Worker:
    """Everything one worker process runs, with the hooks that start and stop it."""

    broker: RedisBroker
    jobs: JobStore
    deliveries: Deliveries
    kinds: list[JobKind[Any]]
    scheduler: Scheduler
    registry: CollectorRegistry
    depth: QueueDepth
    close: Callable[[], Awaitable[None]]


def mailer(settings: Settings) -> Mailer:
    """The SMTP relay of the settings."""
    return Mailer(
        Relay(
            host=settings.smtp_host,
            port=settings.smtp_port,
            tls=settings.smtp_tls,
            sender=settings.smtp_sender,
            timeout_s=settings.smtp_timeout_s,
            username=settings.smtp_username,
            password=(
                settings.smtp_password.get_secret_value() if settings.smtp_password else None
            ),
        )
    )


async def _reachable(*peers: Peer) -> None:
    """Once every peer can be reached (what the scheduled jobs call)."""
    await asyncio.gather(*(peer.ready() for peer in peers))


def build_worker(settings: Settings, extra_kinds: list[JobKind[Any]] | None = None) -> Worker:
    """The broker with a reading and a claiming subscriber per job kind, and the scheduler
    (`extra_kinds`: more kinds beside the built-in ones, for tests of the delivery rules)."""
    redis = Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
    )
    jobs = JobStore(redis, ttl_s=settings.job_ttl_s)
    tls = settings.tls()
    auth = Peer(settings.auth_addr, AUTH_SERVICE, "auth", tls=tls, timeout_s=settings.rpc_timeout_s)
    users = Peer(
        settings.users_addr, USERS_SERVICE, "users", tls=tls, timeout_s=settings.rpc_timeout_s
    )
    kinds: list[JobKind[Any]] = [
        sample_task(work_s=settings.sample_task_s),
        welcome_email(mailer(settings)),
        purge_expired(AuthCalls(auth)),
        users_by_tier(UsersCalls(users)),
        *(extra_kinds or ()),
    ]
    deliveries = Deliveries(
        jobs,
        RetryPolicy(
            max_deliveries=settings.max_deliveries,
            backoff_s=settings.retry_backoff_s,
            backoff_max_s=settings.retry_backoff_max_s,
        ),
        consumer=settings.consumer,
        claim_idle_s=settings.claim_idle_s,
        concurrency=settings.concurrency,
    )
    broker = RedisBroker(
        settings.redis_url,
        # Handlers only start jobs (the deliveries wait for them in close()).
        graceful_timeout=settings.shutdown_grace_s * 0.1,
        # Our JSON lines; FastStream's per-message "Received"/"Processed" only at DEBUG.
        logger=logging.getLogger("faststream.broker"),
        log_level=logging.DEBUG,
    )
    router = RedisRouter()
    for kind in kinds:
        subscribe(
            router,
            kind,
            deliveries,
            consumer=settings.consumer,
            concurrency=settings.concurrency,
            claim_idle_s=settings.claim_idle_s,
            claim_interval_s=settings.claim_interval_s,
        )
    broker.include_router(router)

    async def housekeeping() -> None:
        await say_alive(jobs.redis, settings.consumer, for_s=3 * settings.trim_interval_s)
        for stream in sorted({kind.stream for kind in kinds}):
            await trim_consumed(jobs.redis, stream)
        for kind in kinds:
            for name in await forget_gone_consumers(jobs.redis, kind.stream, kind.name):
                log.info("forgot consumer %s of %s", name, kind.name)

    scheduler = Scheduler(
        jobs,
        [
            Schedule(
                "purge-expired",
                settings.purge_interval_s,
                lambda id_: PurgeRequested(event_id=id_),
            ),
            Schedule(
                "users-by-tier-report",
                settings.report_interval_s,
                lambda id_: ReportRequested(event_id=id_),
            ),
        ],
        housekeeping=housekeeping,
        housekeeping_s=settings.trim_interval_s,
        ready=partial(_reachable, auth, users),
        # Ticks at least as often as housekeeping is due, so a process says it is alive well
        # within the three rounds its word lasts.
        tick_s=min(1.0, settings.trim_interval_s) if settings.trim_interval_s > 0 else 1.0,
    )

    async def close() -> None:
        # In-flight jobs get most of the grace period; the rest is for handing back and closing.
        await deliveries.finish(
            grace_s=settings.shutdown_grace_s * 0.7,
            hand_back_s=max(1.0, settings.shutdown_grace_s * 0.2),
        )
        await jobs.close()
        await auth.close()
        await users.close()

    registry = CollectorRegistry()
    depth = QueueDepth(jobs.redis, kinds)
    register_worker_metrics(registry, deliveries.outcomes, depth)
    return Worker(
        broker=broker,
        jobs=jobs,
        deliveries=deliveries,
        kinds=kinds,
        scheduler=scheduler,
        registry=registry,
        depth=depth,
        close=close,
    )


async def create_groups(worker: Worker) -> None:
    """Every kind's consumer group, at the start of its stream (before the subscribers start)."""
    for kind in worker.kinds:
        await ensure_group(worker.jobs.redis, kind.stream, kind.name)


def build_app(settings: Settings) -> AsgiFastStream:
    """The worker process: the broker and the scheduler, started and stopped by the ASGI
    lifespan; /health (alive), /health/ready (Redis answers) and /metrics."""
    worker = build_worker(settings)
    scheduling: list[asyncio.Task[None]] = []

    @get(include_in_schema=False)
    async def alive(scope: Scope) -> AsgiResponse:
        return _json({"status": "healthy"}, 200)

    @get(include_in_schema=False)
    async def ready(scope: Scope) -> AsgiResponse:
        healthy = await worker.broker.ping(settings.health_timeout_s)
        body = {
            "status": "healthy" if healthy else "unhealthy",
            "checks": {"redis": "ok" if healthy else "unavailable"},
        }
        return _json(body, 200 if healthy else 503)

    @get(include_in_schema=False)
    async def metrics(scope: Scope) -> AsgiResponse:
        with contextlib.suppress(RedisError, OSError):
            await worker.depth.read()
        return AsgiResponse(
            generate_latest(worker.registry),
            status_code=200,
            headers={"content-type": CONTENT_TYPE_LATEST},
        )

    async def prepare() -> None:
        await create_groups(worker)
        log.info(
            "consuming %s",
            ", ".join(f"{kind.stream} ({kind.name})" for kind in worker.kinds),
            extra={"consumer": settings.consumer},
        )

    async def start_scheduler() -> None:
        scheduling.append(asyncio.create_task(worker.scheduler.run()))

    async def stop_starting() -> None:
        # Before the subscribers stop: entries waiting for a slot go back to their groups.
        worker.deliveries.stop_taking()
        worker.scheduler.stop()
        for task in scheduling:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return AsgiFastStream(
        worker.broker,
        asgi_routes=[("/health", alive), ("/health/ready", ready), ("/metrics", metrics)],
        on_startup=[prepare],
        after_startup=[start_scheduler],
        on_shutdown=[stop_starting],
        after_shutdown=[worker.close],
    )


def _json(body: dict[str, Any], status: int) -> AsgiResponse:
    return AsgiResponse(
        json.dumps(body).encode(),
        status_code=status,
        headers={"content-type": "application/json", "cache-control": "no-store"},
    )
