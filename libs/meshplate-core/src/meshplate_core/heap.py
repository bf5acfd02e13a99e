"""The cyclic garbage collector, tuned for a server process once it has started.

CPython collects its youngest generation every 700 net allocations of container objects, and one
request makes hundreds: under load the collector ran many times a second, and every so often a
full collection walked the whole heap (the imported modules, the application, its caches), tens
of milliseconds in which no request moved. That was most of the gateway's p99 (`/me` at 64
connections: 90 ms, 28-36 ms after `settle`) and a tenth of its CPU per request.

`settle`, called once a process is up, moves everything allocated so far into a permanent
generation the collector no longer scans (`gc.freeze`), and collects the youngest generation
every `YOUNG_THRESHOLD` allocations. Reference counting still frees almost everything at once;
only reference cycles wait longer, so a path that makes cycles on every request or job shows as
memory that grows for minutes before it levels off: the worker's e-mails did (worker.mail), and
`gc.set_debug(gc.DEBUG_SAVEALL)` then `gc.collect()` names what is in them (docs/reliability.md).
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000
# Collections of one generation before the next is collected too (CPython's defaults: 10, 10).
OLDER_THRESHOLDS = (20, 50)


def settle() -> None:
    """Freeze what start-up allocated and collect the young generation less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
