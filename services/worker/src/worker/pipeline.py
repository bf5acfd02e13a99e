"""Lua script calls from many tasks, sent to Redis together (meshplate_core.batching).

Calls asked for while a round trip is under way go out in the next one, as one pipeline (not a
transaction: each script is atomic by itself). Under load a round carries the starts, outcomes and
heartbeats of many jobs for the price of one; alone, a call costs what it would cost on its own.
Scripts are sent by their SHA and loaded when Redis does not know them (a restart, SCRIPT FLUSH).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from meshplate_core.batching import Batcher
from meshplate_core.redis_client import RedisClient


class Call(NamedTuple):
    """One script call."""

    script: AsyncScript
    keys: Sequence[Any]
    args: Sequence[Any]


class ScriptPipeline:
    """Sends script calls in rounds."""

    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis
        self._batcher: Batcher[Sequence[Call], list[Any]] = Batcher(self._send_groups)

    def script(self, text: str) -> AsyncScript:
        """A script to call through this pipeline."""
        return self._redis.register_script(text)

    async def call(self, call: Call) -> Any:
        """One call's reply; a Redis error of its own (or of the round trip) is raised."""
        [reply] = await self._batcher.submit([call])
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def call_many(self, calls: Sequence[Call]) -> list[Any]:
        """The replies of `calls`, in order, sent in one round: a call that failed by itself has
        its exception as its reply; a failed round trip raises (RedisError, OSError)."""
        return await self._batcher.submit(calls)

    async def _send_groups(self, groups: Sequence[Sequence[Call]]) -> list[list[Any]]:
        replies = await self._send([call for calls in groups for call in calls])
        answers = []
        start = 0
        for calls in groups:
            answers.append(replies[start : start + len(calls)])
            start += len(calls)
        return answers

    async def _send(self, calls: Sequence[Call], *, load: bool = True) -> list[Any]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for script, keys, args in calls:
                # Not pipe.evalsha: a cluster's pipeline refuses it by name, though it routes
                # EVALSHA by its keys like any command.
                pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        unknown = [n for n, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if unknown and load:
            for script in {calls[n].script.sha: calls[n].script for n in unknown}.values():
                await self._redis.script_load(script.script)
            again = await self._send([calls[n] for n in unknown], load=False)
            for n, reply in zip(unknown, again, strict=True):
                replies[n] = reply
        return replies
