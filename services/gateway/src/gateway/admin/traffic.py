"""The requests this gateway answered over the last minute, for the dashboard: read off its own
Prometheus counters (every process of the pod's, when they share their samples), sampled each time
the dashboard is shown; the rate and the errors between now and the oldest sample of the last
minute (or, the first time, since the process started). The dashboard refreshes itself every 10 s,
so while it is open its window is the last minute; the page says how long it is."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from meshplate_core.metrics import scraped

WINDOW_S = 60.0


@dataclass(frozen=True)
class Window:
    """Requests answered over `seconds`, and how many of them were 5xx."""

    seconds: float
    requests: float
    errors: float

    @property
    def rate(self) -> float:
        """Requests a second."""
        return self.requests / self.seconds if self.seconds > 0 else 0.0


class Traffic:
    """Samples of the gateway's answer counters."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._samples: deque[tuple[float, float, float]] = deque()
        # From the start: the first showing covers the process's life, up to now.
        self.sample()

    def _totals(self) -> tuple[float, float]:
        requests = errors = 0.0
        for family in scraped(self._registry).collect():
            if family.name != "http_requests":
                continue
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    requests += sample.value
                    if sample.labels.get("status", "").startswith("5"):
                        errors += sample.value
        return requests, errors

    def sample(self) -> None:
        """Note the counters now; forget samples older than the window."""
        now = time.monotonic()
        self._samples.append((now, *self._totals()))
        while len(self._samples) > 1 and now - self._samples[1][0] >= WINDOW_S:
            self._samples.popleft()

    def last_minute(self) -> Window:
        """What was answered between the oldest sample of the window and now."""
        self.sample()
        since, requests, errors = self._samples[0]
        now, requests_now, errors_now = self._samples[-1]
        return Window(now - since, requests_now - requests, errors_now - errors)
