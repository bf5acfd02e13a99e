"""The loads of the scenarios, as the issue sets them (`wrk -t2 -c64 -d10s --latency`; 8 or 16
connections for logins and sign-ups), and how a scenario is attempted: measured and shown at
once, or, when it fails, noted so the run can go on and report everything."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from urllib.parse import urlencode

import httpx

from bench import lua
from bench.procs import Group
from bench.report import scenario, show
from bench.results import Load, Run, Spec, measure
from bench.wrk import run_wrk

DURATION_S = 10.0
CONNECTIONS = 64
Start = Callable[[], Awaitable[Load]]


def get(url: str, headers: Mapping[str, str] | None = None) -> Start:
    """GET `url` with 64 connections."""
    return lambda: run_wrk(
        url, lua.counting(), connections=CONNECTIONS, duration_s=DURATION_S, headers=headers
    )


def post(url: str, script: str, connections: int) -> Start:
    """The requests a bench.lua script makes, to `url`."""
    return lambda: run_wrk(url, script, connections=connections, duration_s=DURATION_S)


def login(username: str, password: str) -> str:
    """The script of a login again and again (the form of `POST /api/v1/login`)."""
    form = urlencode({"username": username, "password": password})
    return lua.post("/api/v1/login", form, "application/x-www-form-urlencoded")


async def read_once(url: str, headers: Mapping[str, str] | None = None) -> None:
    """Read a URL once before loading it (caches filled, connections made): it must be 200."""
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.get(url, headers=headers)
    assert response.status_code == 200, f"{url}: {response.status_code} {response.text}"


async def attempt(
    run: Run, system: str, groups: Sequence[Group], *specs: Spec, quiet: Sequence[Group] = ()
) -> None:
    """Measure `specs` (bench.results.measure) into `run` and show them; a failure is noted in
    `run.errors` instead, and the run goes on."""
    try:
        run.add(*await measure(system, groups, *specs, quiet=quiet))
    except Exception as exc:  # every scenario is reported; the errors fail the test at the end
        run.errors.append(f"{', '.join(spec.key for spec in specs)}: {exc!r}"[:1000])
    for spec in specs:
        if spec.key in run.results:
            show(scenario(run, run.results[spec.key]))


async def get_each(
    run: Run,
    system: str,
    groups: Sequence[Group],
    routes: Sequence[tuple[str, str, str, Mapping[str, str] | None]],
    *,
    quiet: Sequence[Group] = (),
) -> None:
    """For each (key, title, url, headers): read it once, then load it with 64 connections."""
    for key, title, url, headers in routes:
        await read_once(url, headers)
        spec = Spec(key, title, CONNECTIONS, get(url, headers))
        await attempt(run, system, groups, spec, quiet=quiet)
