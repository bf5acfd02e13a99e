"""The welcome e-mail through a real SMTP server (aiosmtpd): once per event, retried while the
relay defers, dead when it refuses for good."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from meshplate_core.dead_letters import dead_stream, replay
from meshplate_core.events import UserRegistered
from meshplate_core.jobs import JobStore
from meshplate_core.streams import encode
from meshplate_testing.processes import ServiceProcess
from meshplate_testing.servers import free_port
from meshplate_testing.smtp import Mailbox, smtp_server
from worker.app import Worker
from worker.kinds.welcome import welcome_message
from worker.mail import Mailer, Relay

from .test_delivery import running, until_finished


async def publish(worker: Worker, event: UserRegistered) -> None:
    # redis-py's stubs want a dict of its own invariant key and value unions.
    await worker.jobs.redis.xadd(UserRegistered.STREAM, encode(event))  # type: ignore[arg-type]


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with smtp_server() as box:
        yield box


def ann() -> UserRegistered:
    return UserRegistered(user_id=7, username="ann", name="Ann Lee", email="ann@example.com")


async def test_one_welcome_email_per_event_even_when_delivered_twice(
    flushed_redis: str, mailbox: Mailbox
) -> None:
    event = ann()
    async with running(flushed_redis, smtp_port=mailbox.port) as worker:
        for _ in range(2):
            await publish(worker, event)
        job = await until_finished(worker.jobs, f"welcome-email-{event.event_id}")
        await asyncio.sleep(0.5)

    [message] = mailbox.messages
    assert message["To"] == "Ann Lee <ann@example.com>"
    assert message["Subject"] == "Welcome to Meshplate"
    assert message["Message-ID"] == f"<{event.event_id}@meshplate>"
    assert "@ann" in message.get_payload()
    assert (job.status, job.attempts, job.owner_id) == ("succeeded", 1, 7)


async def test_a_deferring_relay_is_retried(flushed_redis: str, mailbox: Mailbox) -> None:
    mailbox.refuse(451, times=2)
    event = ann()
    async with running(flushed_redis, smtp_port=mailbox.port) as worker:
        await publish(worker, event)
        job = await until_finished(worker.jobs, f"welcome-email-{event.event_id}")

    assert (job.status, job.attempts) == ("succeeded", 3)
    assert (len(mailbox.messages), mailbox.refused) == (1, 2)


async def test_a_refused_address_is_dead_at_once(flushed_redis: str, mailbox: Mailbox) -> None:
    mailbox.refuse(550)
    event = ann()
    async with running(flushed_redis, smtp_port=mailbox.port) as worker:
        await publish(worker, event)
        job = await until_finished(worker.jobs, f"welcome-email-{event.event_id}")
        dead: Any = await worker.jobs.redis.xrange(dead_stream("welcome-email"))

    assert (job.status, job.attempts) == ("dead", 1)
    assert job.error is not None
    assert job.error.startswith("SMTP 550 for ann@example.com")
    assert len(dead) == 1
    assert mailbox.messages == []


async def test_an_unreachable_relay_ends_dead_after_the_allowed_deliveries(
    flushed_redis: str,
) -> None:
    event = ann()
    async with running(flushed_redis, smtp_port=free_port()) as worker:
        await publish(worker, event)
        job = await until_finished(worker.jobs, f"welcome-email-{event.event_id}")

    assert (job.status, job.attempts) == ("dead", 3)
    assert job.error is not None
    assert "SMTPConnectError" in job.error


async def test_dead_jobs_are_listed_and_replayed_from_the_command_line(
    flushed_redis: str, mailbox: Mailbox
) -> None:
    mailbox.refuse(550, times=1)
    event = ann()
    job_id = f"welcome-email-{event.event_id}"
    async with running(flushed_redis, smtp_port=mailbox.port) as worker:
        await publish(worker, event)
        dead = await until_finished(worker.jobs, job_id)
        listed = await _cli(flushed_redis, "dead", "welcome-email")
        replayed = await _cli(flushed_redis, "replay", "welcome-email")
        async with asyncio.timeout(10):
            while (job := await worker.jobs.get(job_id)) is None or job.status != "succeeded":
                await asyncio.sleep(0.02)
        left = await worker.jobs.redis.xlen(dead_stream("welcome-email"))

    assert dead.status == "dead"
    [line] = listed
    assert job_id in line
    assert "SMTP 550" in line
    assert replayed == ["replayed 1 dead welcome-email jobs"]
    assert (job.attempts, job.error, left) == (1, None, 0)
    assert len(mailbox.messages) == 1


async def _cli(redis_url: str, *args: str) -> list[str]:
    process = ServiceProcess("worker", *args, env={"WORKER_REDIS_URL": redis_url})
    await process.start()
    code = await process.wait(timeout_s=20)
    assert code == 0, process.output()
    return process.raw


async def test_a_replayed_job_gets_a_whole_record_even_after_its_own_expired(
    flushed_redis: str, mailbox: Mailbox
) -> None:
    mailbox.refuse(550, times=1)
    event = ann()
    job_id = f"welcome-email-{event.event_id}"
    async with running(flushed_redis, smtp_port=mailbox.port) as worker:
        await publish(worker, event)
        await until_finished(worker.jobs, job_id)
        await worker.jobs.redis.delete(JobStore.key(job_id))  # expired
        replayed = await replay(worker.jobs, "welcome-email")
        job = await until_finished(worker.jobs, job_id)

    assert replayed == 1
    assert (job.status, job.attempts, job.owner_id, job.system) == ("succeeded", 1, 7, False)


def test_the_mailers_messages_share_their_header_classes() -> None:
    # The standard header registry makes a class per header set or read: garbage cycles, many
    # per message, that a process collecting rarely kept for minutes (worker.mail).
    mailer = Mailer(Relay(host="127.0.0.1", port=25, tls="none", sender="a@b.c", timeout_s=1))
    first, second = (welcome_message(ann(), mailer.message()) for _ in range(2))

    assert all(type(first[name]) is type(second[name]) for name in ("From", "To", "Subject"))
    assert str(first["To"]) == "Ann Lee <ann@example.com>"
    assert str(first["From"]) == "a@b.c"
