"""Debian packages the tests and benchmarks need beyond PostgreSQL and Redis (a browser, a load
generator, a container engine): installed with apt-get when missing and this process is root,
else one line saying what to install, fit for `pytest.skip`."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence


def installed(packages: Sequence[str], *, commands: Sequence[str]) -> str:
    """ "" once every one of `commands` is on the PATH, installing `packages` (as root, with
    apt-get, the package lists refreshed if the first try fails) when some are missing; else
    why not, in one line."""
    if all(shutil.which(command) for command in commands):
        return ""
    wanted = " ".join(packages)
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"needs Debian's packages {wanted} (apt-get install, as root)"
    install = ["apt-get", "install", "-y", "-q", *packages]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    last = ""
    for steps in ([install], [["apt-get", "update", "-q"], install]):
        for step in steps:
            done = subprocess.run(
                step, env=env, capture_output=True, text=True, timeout=900, check=False
            )
            last = ((done.stderr or done.stdout).strip().splitlines() or [""])[-1]
        if all(shutil.which(command) for command in commands):
            return ""
    return f"could not install Debian's packages {wanted}: {last or 'no message'}"
