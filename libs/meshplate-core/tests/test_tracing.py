"""Trace exporting: off by default, switched on by the standard OTEL_* settings (in child
processes: the global tracer provider can be set once per process)."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
from meshplate_core.tracing import configure_tracing, current_trace_id, shutdown_tracing, span
on = configure_tracing("probe")
with span("work"):
    traced = current_trace_id()
shutdown_tracing()
print("ON" if on else "OFF", traced)
"""


def _run(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def test_exporting_is_off_by_default() -> None:
    assert _run().strip() == "OFF None"


def test_the_standard_settings_switch_exporting_on() -> None:
    out = _run(OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="probe-service")

    assert '"name": "work"' in out
    assert '"service.name": "probe-service"' in out
    assert out.strip().splitlines()[-1].startswith("ON ")
