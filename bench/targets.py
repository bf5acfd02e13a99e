"""Issue #11's targets (and #12's restart time), checked against one run's results: each
scenario's comparison (the monolith's same route, a reference of the same run, or the same load
alone), and the table of targets with what was measured. Targets relative to the monolith are
left unchecked when it did not run."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bench.results import Result, Run

MIB = 1024 * 1024
JOBS = 10_000
# OWASP's argon2id table (memory KiB, iterations), parallelism 1: any row, or more of both.
OWASP_ARGON2ID = ((47104, 1), (19456, 2), (12288, 3), (9216, 4), (7168, 5))
# Reads Redis processed per CheckLimit call: one round trip each, and some slack for what the
# rest of the stack asks meanwhile (blocking stream reads, health pings).
ROUND_TRIPS_SLACK = 1.05
# What each scenario is compared with.
COMPARISONS = {
    "health": "ref-http",
    "me-gateway": "monolith-me",
    "me-envoy": "monolith-me",
    "posts": "monolith-posts",
    "user": "monolith-user",
    "login-8": "monolith-login-8",
    "login-16": "monolith-login-8",
    "me-with-logins": "me-gateway",
    "logins-with-me": "login-8",
    "check-limit": "ref-grpc",
}
# Seconds a restarted users process may take to serve again (issue #12; the README says so).
USERS_START_S = 2.0
RSS_LIMITS = {"gateway": 150, "auth": 120, "users": 120, "ratelimit": 120}


@dataclass(frozen=True)
class Target:
    """One target: what was measured, and whether it was met (None: not checked)."""

    text: str
    measured: str
    met: bool | None


def ratio(run: Run, key: str) -> float | None:
    """A scenario's rate over its comparison's, when both were measured."""
    result, base = run.results.get(key), run.results.get(COMPARISONS.get(key, ""))
    return result.rate / base.rate if result and base and base.rate else None


def owasp_argon2id(password_hash: str) -> bool:
    """Whether a hash is argon2id at (at least) a cost of OWASP's table."""
    found = re.match(r"\$argon2id\$v=\d+\$m=(\d+),t=(\d+),p=\d+\$", password_hash)
    if found is None:
        return False
    used = int(found[1]), int(found[2])
    return any(used[0] >= memory and used[1] >= passes for memory, passes in OWASP_ARGON2ID)


def hash_parameters(password_hash: str) -> str:
    """A hash's scheme and cost, without its salt and digest."""
    return "$".join(password_hash.split("$")[:4])


def _ratio_target(run: Run, text: str, key: str, at_least: float, checked: bool) -> Target:
    value = ratio(run, key)
    measured = "not measured" if value is None else f"{value:.2f}x"
    return Target(text, measured if checked else "-", (value or 0) >= at_least if checked else None)


def _refusals(run: Run, key: str) -> Target:
    result = run.results.get(key)
    measured = "not measured" if result is None else str(result.failures or "none")
    return Target(f"{key}: no refusals", measured, result is not None and not result.failures)


def _rss(run: Run) -> list[Target]:
    """Per process (the issue's "every process"): a gateway in several processes has each of
    them checked; the total is shown beside."""
    targets = []
    for name, limit in RSS_LIMITS.items():
        text = f"{name} RSS idle / after <= {limit} MiB"
        if name not in run.rss:
            targets.append(Target(text, "not measured", False))
            continue
        idle, after = run.rss[name]
        measured = f"{idle.largest / MIB:.0f} / {after.largest / MIB:.0f} MiB"
        if after.processes > 1:
            measured += f" each (in all {after.total / MIB:.0f} in {after.processes} processes)"
        targets.append(Target(text, measured, max(idle.largest, after.largest) <= limit * MIB))
    return targets


def _p99(run: Run, checked: bool) -> Target:
    me, base = run.results.get("me-gateway"), run.results.get("monolith-me")
    if not checked or me is None or base is None:
        return Target("/me at the gateway: p99 <= 0.5x the monolith's", "-", None)
    value = me.p99_s / base.p99_s if base.p99_s else float("inf")
    return Target("/me at the gateway: p99 <= 0.5x the monolith's", f"{value:.2f}x", value <= 0.5)


def _jobs(run: Run) -> list[Target]:
    jobs: Result | None = run.results.get("jobs")
    if jobs is None:
        return [Target(f"{JOBS:,} jobs >= 1,000 jobs/s, none lost", "not measured", False)]
    return [
        Target(f"{JOBS:,} jobs: >= 1,000 jobs/s", f"{jobs.rate:.0f}/s", jobs.rate >= 1000),
        Target(
            f"{JOBS:,} jobs: every one succeeded",
            f"{jobs.ok:,} succeeded, {jobs.failures or 'nothing else'}",
            jobs.ok >= JOBS and not jobs.failures,
        ),
    ]


def check(run: Run, *, monolith: bool) -> list[Target]:
    """Every target, in the issue's order."""
    logins = run.results.get("login-8")
    reads = run.redis_reads_per_check
    password_hash = run.password_hash or ""
    return [
        _ratio_target(run, "/me at the gateway >= 2.0x the monolith", "me-gateway", 2.0, monolith),
        _p99(run, monolith),
        _ratio_target(run, "/me through Envoy >= 1.5x the monolith", "me-envoy", 1.5, monolith),
        _ratio_target(run, "posts page >= 1.5x the monolith", "posts", 1.5, monolith),
        _ratio_target(run, "/user/{username} >= 1.5x the monolith", "user", 1.5, monolith),
        _ratio_target(run, "gateway /health >= 0.5x ref-http", "health", 0.5, True),
        _ratio_target(run, "logins (8) >= 5x the monolith", "login-8", 5.0, monolith),
        Target(
            "logins (8) >= 38/s",
            f"{logins.rate:.1f}/s" if logins else "not measured",
            logins is not None and logins.rate >= 38,
        ),
        Target(
            "password hashes: argon2id at OWASP's cost",
            hash_parameters(password_hash) or "not read",
            owasp_argon2id(password_hash),
        ),
        *(_refusals(run, key) for key in ("login-8", "login-16", "signup-8", "signup-16")),
        _ratio_target(run, "/me during logins >= 0.7x solo", "me-with-logins", 0.7, True),
        _ratio_target(run, "CheckLimit >= 0.6x ref-grpc", "check-limit", 0.6, True),
        Target(
            "CheckLimit: <= 1 Redis round trip per decision",
            "not measured" if reads is None else f"{reads:.2f}",
            reads is not None and reads <= ROUND_TRIPS_SLACK,
        ),
        *_jobs(run),
        *_rss(run),
        Target(
            "a restarted users process serves within 2 s (issue #12)",
            "not measured" if run.users_start_s is None else f"{run.users_start_s:.2f} s",
            run.users_start_s is not None and run.users_start_s <= USERS_START_S,
        ),
    ]
