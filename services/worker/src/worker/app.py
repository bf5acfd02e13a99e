"""The worker's composition root: the job kinds and their handlers on one broker, the scheduler,
the HTTP endpoints, and the order they start and stop in."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from faststream.asgi import AsgiFastStream
from faststream.redis import RedisBroker, RedisClusterBroker, RedisRouter
from prometheus_client import CollectorRegistry

from meshplate_core.jobs import JobStore
from meshplate_core.redis_client import cluster_nodes, connect, is_cluster
from meshplate_core.streams import ensure_group
from worker import endpoints
from worker.clients import AUTH_SERVICE, USERS_SERVICE, AuthCalls, Peer, UsersCalls
from worker.delivery import Deliveries, RetryPolicy
from worker.handlers import subscribe
from worker.housekeeping import tidy
from worker.kinds import JobKind
from worker.kinds.purge import PurgeRequested, purge_expired
from worker.kinds.report import ReportRequested, users_by_tier
from worker.kinds.sample import sample_task
from worker.kinds.welcome import welcome_email
from worker.mail import Mailer, Relay
from worker.metrics import QueueDepth, register_worker_metrics
from worker.schedule import Schedule, Scheduler
from worker.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Worker:
    """Everything one worker process runs."""

    settings: Settings
    broker: RedisBroker
    jobs: JobStore
    deliveries: Deliveries
    kinds: list[JobKind[Any]]
    scheduler: Scheduler
    peers: list[Peer]

    async def close(self) -> None:
        """After the broker stopped: hand-backs written, what this process holds given back,
        connections closed."""
        grace_s = self.settings.shutdown_grace_s
        await self.deliveries.finish(self.kinds, hand_back_s=max(1.0, grace_s * 0.2))
        await self.jobs.close()
        for peer in self.peers:
            await peer.close()


def build_worker(settings: Settings, extra_kinds: list[JobKind[Any]] | None = None) -> Worker:
    """The broker with each job kind's handler, and the scheduler (`extra_kinds`: more kinds
    beside the built-in ones, for tests of the delivery rules)."""
    jobs = JobStore(
        connect(
            settings.redis_url,
            socket_timeout=settings.redis_timeout_s,
            socket_connect_timeout=settings.redis_timeout_s,
        ),
        ttl_s=settings.job_ttl_s,
    )
    tls, timeout_s = settings.tls(), settings.rpc_timeout_s
    auth = Peer(settings.auth_addr, AUTH_SERVICE, "auth", tls=tls, timeout_s=timeout_s)
    users = Peer(settings.users_addr, USERS_SERVICE, "users", tls=tls, timeout_s=timeout_s)
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
            settings.max_deliveries, settings.retry_backoff_s, settings.retry_backoff_max_s
        ),
        consumer=settings.consumer,
        claim_idle_s=settings.claim_idle_s,
        concurrency=settings.concurrency,
    )
    return Worker(
        settings=settings,
        broker=_broker(settings, kinds, deliveries),
        jobs=jobs,
        deliveries=deliveries,
        kinds=kinds,
        scheduler=_scheduler(settings, jobs, kinds, ready=partial(_reachable, auth, users)),
        peers=[auth, users],
    )


def mailer(settings: Settings) -> Mailer:
    """The SMTP relay of the settings."""
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    return Mailer(
        Relay(
            host=settings.smtp_host,
            port=settings.smtp_port,
            tls=settings.smtp_tls,
            sender=settings.smtp_sender,
            timeout_s=settings.smtp_timeout_s,
            username=settings.smtp_username,
            password=password,
        )
    )


def _broker(settings: Settings, kinds: list[JobKind[Any]], deliveries: Deliveries) -> RedisBroker:
    options: dict[str, Any] = {
        # Running jobs get most of the grace period, then are cancelled (handed back); the rest
        # is for writing the hand-backs and closing.
        "graceful_timeout": settings.shutdown_grace_s * 0.7,
        # Handlers take the entry as read: no dependency injection to resolve per message (a
        # quarter of the worker's CPU per job).
        "apply_types": False,
        # Our JSON lines; FastStream's per-message "Received"/"Processed" only at DEBUG.
        "logger": logging.getLogger("faststream.broker"),
        "log_level": logging.DEBUG,
    }
    broker: RedisBroker
    if is_cluster(settings.redis_url):
        first, nodes = cluster_nodes(settings.redis_url)
        broker = RedisClusterBroker(first, startup_nodes=nodes, **options)
    else:
        broker = RedisBroker(settings.redis_url, **options)
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
    return broker


def _scheduler(
    settings: Settings,
    jobs: JobStore,
    kinds: list[JobKind[Any]],
    *,
    ready: Callable[[], Awaitable[object]],
) -> Scheduler:
    every_s = settings.trim_interval_s
    return Scheduler(
        jobs,
        [
            Schedule("purge-expired", settings.purge_interval_s, _purge),
            Schedule("users-by-tier-report", settings.report_interval_s, _report),
        ],
        housekeeping=partial(tidy, jobs.redis, settings.consumer, kinds, every_s=every_s),
        housekeeping_s=every_s,
        ready=ready,
        # Ticks at least as often as housekeeping is due, so a process says it is alive well
        # within the three rounds its word lasts.
        tick_s=min(1.0, every_s) if every_s > 0 else 1.0,
    )


def _purge(event_id: str) -> PurgeRequested:
    return PurgeRequested(event_id=event_id)


def _report(event_id: str) -> ReportRequested:
    return ReportRequested(event_id=event_id)


async def _reachable(*peers: Peer) -> None:
    """Once every peer can be reached (what the scheduled jobs call)."""
    await asyncio.gather(*(peer.ready() for peer in peers))


async def create_groups(worker: Worker) -> None:
    """Every kind's consumer group, at the start of its stream (before the subscribers start)."""
    for kind in worker.kinds:
        await ensure_group(worker.jobs.redis, kind.stream, kind.name)


def build_app(settings: Settings) -> AsgiFastStream:
    """The worker process, started and stopped by the ASGI lifespan: groups, then the broker,
    then the scheduler; at shutdown nothing more starts, the broker lets running jobs finish
    (or hands them back), then the rest closes."""
    worker = build_worker(settings)
    registry = CollectorRegistry()
    depth = QueueDepth(worker.jobs.redis, worker.kinds)
    register_worker_metrics(registry, worker.deliveries.outcomes, depth)
    scheduling: list[asyncio.Task[None]] = []

    async def prepare() -> None:
        await create_groups(worker)
        # What the admin panel lists dead letters of.
        await worker.jobs.register_kinds([kind.name for kind in worker.kinds])
        streams = ", ".join(f"{kind.stream} ({kind.name})" for kind in worker.kinds)
        log.info("consuming %s", streams, extra={"consumer": settings.consumer})

    async def start_scheduler() -> None:
        scheduling.append(asyncio.create_task(worker.scheduler.run()))

    async def stop_starting() -> None:
        worker.deliveries.stop_taking()
        worker.scheduler.stop()
        for task in scheduling:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return AsgiFastStream(
        worker.broker,
        asgi_routes=endpoints.routes(
            worker.broker, registry, depth, ping_timeout_s=settings.health_timeout_s
        ),
        on_startup=[prepare],
        after_startup=[start_scheduler],
        on_shutdown=[stop_starting],
        after_shutdown=[worker.close],
    )
