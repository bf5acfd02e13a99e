"""Fixed rate-limit windows in tests: they end at multiples of their period since the epoch, so a
test reading one must not straddle an edge, and must compare a reset time modulo the period."""

from __future__ import annotations

import asyncio
import time


async def clear_of_window_edge(period_s: int, margin_s: float = 3.0) -> None:
    """Return at once, or, within `margin_s` of a window edge, once that edge is `margin_s` past."""
    into = time.time() % period_s
    if into > period_s - margin_s:
        await asyncio.sleep(period_s - into + margin_s)
    elif into < margin_s:
        await asyncio.sleep(margin_s - into)


def seconds_off_window_edge(reset_s: float, period_s: int) -> float:
    """How far `now + reset_s` is from the nearest window edge (0 for a true reset time)."""
    off = (time.time() + reset_s) % period_s
    return min(off, period_s - off)
