"""How a run is shown: a table per scenario as it is measured, then the summary (every scenario,
CPU by process, memory, findings, targets) printed and written to
`bench/results/<date>-<cpu>.md`, with the machine it ran on."""

from __future__ import annotations

import datetime
import os
import platform
import re
import sys
from pathlib import Path

from bench.results import Result, Run
from bench.targets import COMPARISONS, MIB, Target, ratio

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    """The CPU's model name, from /proc/cpuinfo."""
    try:
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    except OSError:
        found = None
    return found[1].strip() if found else platform.processor() or "unknown cpu"


def machine() -> str:
    """The machine the figures were measured on."""
    return (
        f"{platform.machine()}, {cpu_model()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )


def _row(*cells: object) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _failures(result: Result) -> str:
    return ", ".join(f"{k}: {n}" for k, n in result.failures.items()) or "none"


def _ratio(run: Run, key: str) -> str:
    if key not in COMPARISONS:
        return "-"
    value = ratio(run, key)
    return f"{value:.2f}x {COMPARISONS[key]}" if value is not None else f"vs {COMPARISONS[key]}: -"


def scenario(run: Run, result: Result) -> str:
    """One scenario's table: its figures, then its CPU per answer by process."""
    names = list(result.cpu_ms)
    lines = [
        f"\n{result.title} ({result.system}, {result.connections} connections)",
        _row(f"{result.unit}/s", "p50 ms", "p90 ms", "p99 ms", "non-2xx", "ratio"),
        _row(*["---"] * 6),
        _row(
            f"{result.rate:.1f}",
            _ms(result.p50_s),
            _ms(result.p90_s),
            _ms(result.p99_s),
            _failures(result),
            _ratio(run, result.key),
        ),
        _row("process", *names, "sum", "(load generator)"),
        _row(*["---"] * (len(names) + 3)),
        _row(
            f"CPU ms/{result.unit}",
            *(f"{result.cpu_ms[n]:.2f}" for n in names),
            f"{result.cpu_sum:.2f}",
            f"{result.load_ms:.2f}",
        ),
    ]
    return "\n".join(lines + ([f"({result.note})"] if result.note else []))


def _cpu_table(run: Run) -> list[str]:
    names = list(dict.fromkeys(name for r in run.results.values() for name in r.cpu_ms))
    lines = [_row("scenario", *names, "sum", "load generator"), _row(*["---"] * (len(names) + 3))]
    for result in run.results.values():
        cells = [f"{result.cpu_ms[n]:.2f}" if n in result.cpu_ms else "" for n in names]
        lines.append(_row(result.key, *cells, f"{result.cpu_sum:.2f}", f"{result.load_ms:.2f}"))
    return lines


def summary(run: Run, targets: list[Target], *, when: datetime.datetime) -> str:
    """Everything the run measured, in markdown."""
    lines = [
        f"# make bench, {when:%Y-%m-%d %H:%M}",
        "",
        f"Machine: {machine()}.",
        "",
        "## Scenarios",
        "",
        _row(
            "scenario",
            "system",
            "conns",
            "rate",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "non-2xx",
            "ratio",
            "CPU ms per answer",
        ),
        _row(*["---"] * 10),
    ]
    for r in run.results.values():
        lines.append(
            _row(
                f"{r.key}: {r.title}",
                r.system,
                r.connections,
                f"{r.rate:.1f} {r.unit}/s",
                _ms(r.p50_s),
                _ms(r.p90_s),
                _ms(r.p99_s),
                _failures(r),
                _ratio(run, r.key),
                f"{r.cpu_sum:.2f}",
            )
        )
    lines += [f"\n{r.key}: {r.note}." for r in run.results.values() if r.note]
    lines += ["", "## CPU milliseconds per answer, by process", "", *_cpu_table(run)]
    lines += [
        "",
        "## Resident memory (MiB)",
        "",
        "VmRSS, summed over a group's processes (pages they share are counted in each).",
        "",
        _row("process", "idle", "after the load", "processes", "largest process after"),
        _row(*["---"] * 5),
    ]
    for name, (idle, after) in run.rss.items():
        lines.append(
            _row(
                name,
                f"{idle.total / MIB:.0f}",
                f"{after.total / MIB:.0f}",
                after.processes,
                f"{after.largest / MIB:.0f}",
            )
        )
    if run.facts:
        lines += ["", "## Findings", "", *(f"- {k}: {v}" for k, v in run.facts.items())]
    lines += ["", "## Targets (issues #11 and #12)", "", _row("target", "measured", "met")]
    lines.append(_row("---", "---", "---"))
    verdicts = {True: "yes", False: "**no**", None: "not checked"}
    lines += [_row(t.text, t.measured, verdicts[t.met]) for t in targets]
    return "\n".join(lines) + "\n"


def show(text: str) -> None:
    """Print at once (`make bench` runs pytest with -s)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def write(text: str, *, when: datetime.datetime) -> Path:
    """Save a summary as bench/results/<date>-<cpu>.md; its path."""
    slug = re.sub(r"[^a-z0-9]+", "-", cpu_model().lower()).strip("-")
    path = RESULTS / f"{when:%Y-%m-%d}-{slug}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
