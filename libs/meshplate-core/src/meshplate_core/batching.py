"""Natural batching: what callers ask for while a batch is in flight goes out together next.

A call that finds nothing in flight is sent at once (after the current turn of the event loop, so
calls made in the same turn share it): under light load nothing waits for a timer. Under load,
calls pile up while a batch is in flight and the next batch carries all of them, so one round trip
(a gRPC call, a Redis script) serves many callers and the cost per call falls as the load rises
(as gubernator batches rate-limit checks, without its fixed wait).

With `linger_s`, a busy batcher launches at most one batch per `linger_s` (per in-flight slot):
a call that finds the last batch launched less than that ago waits for the rest of the window,
so that, under load, batches carry several calls each (as gubernator waits up to 500 us), while
a call that finds the batcher idle for longer is sent at once (light load waits for nothing).

Each batch runs in a task of its own with an empty context: it serves many requests, so it
carries none's request id or trace. A failed batch fails each of its callers with the same
exception; a caller that gives up (cancelled) leaves its item in the batch but gets no answer.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class Batcher(Generic[In, Out]):
    """Sends items through `send` (a list in, one result per item out, in order) in batches of at
    most `max_batch`, with at most `in_flight` batches outstanding."""

    def __init__(
        self,
        send: Callable[[Sequence[In]], Awaitable[Sequence[Out]]],
        *,
        max_batch: int = 500,
        in_flight: int = 1,
        linger_s: float = 0.0,
    ) -> None:
        self._send = send
        self._max_batch = max_batch
        self._in_flight = in_flight
        self._linger_s = linger_s
        self._launched_at = float("-inf")
        self._waiting: list[tuple[In, asyncio.Future[Out]]] = []
        self._running = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, item: In) -> Out:
        """The result for `item`, once the batch carrying it is answered."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Out] = loop.create_future()
        self._waiting.append((item, future))
        self._schedule(loop)
        return await future

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._scheduled or self._running >= self._in_flight:
            return
        self._scheduled = True
        wait_s = self._launched_at + self._linger_s - loop.time()
        if wait_s > 0:
            loop.call_later(wait_s, self._launch)
        else:
            loop.call_soon(self._launch)

    def _launch(self) -> None:
        self._scheduled = False
        self._launched_at = asyncio.get_running_loop().time()
        while self._waiting and self._running < self._in_flight:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            self._running += 1
            task = asyncio.get_running_loop().create_task(
                self._run(batch), context=contextvars.Context()
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[In, asyncio.Future[Out]]]) -> None:
        try:
            results = await self._send([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} results for a batch of {len(batch)}")
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        except BaseException:
            # Cancelled (the process is stopping): so are its callers.
            for _, future in batch:
                future.cancel()
            raise
        else:
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
        finally:
            self._running -= 1
            if self._waiting:
                self._schedule(asyncio.get_running_loop())
