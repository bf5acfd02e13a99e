"""A compose project under Podman, for `make test-containers`: the engine (Debian's podman, runc
and debootstrap, installed as root when missing), podman-compose, and what a test asks of the
containers: their state and health, commands inside them, a clean tear-down.

Podman 4.3 runs health checks from systemd timers; where there is no systemd (a CI sandbox), no
check would ever run, so `Project.wait_healthy` runs them itself, as the timers would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshplate_testing.packages import installed


def podman(containers_conf: Path) -> tuple[str | None, str]:
    """(podman's path, "") once it runs with `containers_conf`, or (None, why not, one line)."""
    if os.geteuid() != 0:
        return None, "needs root (rootful Podman, debootstrap for the local base images)"
    wanted = ["podman", "runc", "debootstrap"]
    if missing := installed(wanted, commands=wanted):
        return None, f"no Podman: {missing}"
    found = shutil.which("podman")
    assert found
    done = subprocess.run(
        [found, "info", "--format", "{{.Host.OCIRuntime.Name}}"],
        env={**os.environ, "CONTAINERS_CONF": str(containers_conf)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return None, f"Podman cannot run containers here: {last}"
    return found, ""


@dataclass
class Project:
    """One compose project (`name`, from `compose_file`) run by podman-compose with `env`."""

    podman: str
    name: str
    compose_file: Path
    env: Mapping[str, str]

    def run(
        self, *args: str, timeout_s: float = 120, check: bool = True, input_text: str | None = None
    ) -> str:
        """A podman command's output (stdout); its failure raises with what it printed."""
        done = self.attempt(*args, timeout_s=timeout_s, input_text=input_text)
        if check and done.returncode != 0:
            raise AssertionError(
                f"podman {' '.join(args)} exited {done.returncode}:\n{done.stderr}"
            )
        return done.stdout

    def attempt(
        self, *args: str, timeout_s: float = 120, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """A podman command, however it ends."""
        return self._run([self.podman, *args], timeout_s=timeout_s, input_text=input_text)

    def compose(self, *args: str, timeout_s: float = 600) -> str:
        """A podman-compose command on this project."""
        tool = str(Path(sys.executable).with_name("podman-compose"))
        command = [
            tool,
            "--podman-path",
            self.podman,
            "-p",
            self.name,
            "-f",
            str(self.compose_file),
        ]
        done = self._run([*command, *args], timeout_s=timeout_s)
        if done.returncode != 0:
            raise AssertionError(
                f"podman-compose {' '.join(args)} exited {done.returncode}:\n{done.stderr}"
            )
        return done.stdout

    def _run(
        self, command: Sequence[str], *, timeout_s: float, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            command,
            env={**os.environ, **self.env},
            cwd=self.compose_file.parent,
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        return done

    @property
    def label(self) -> str:
        return f"io.podman.compose.project={self.name}"

    def inspect(self, container: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = json.loads(self.run("inspect", container))
        return found[0]

    def container(self, service: str) -> str:
        return f"{self.name}_{service}_1"

    def up_in_order(self, config: Mapping[str, Any], *, timeout_s: float = 300) -> None:
        """`compose up`, one layer of `depends_on` at a time, each service waited for as its
        dependents ask (completed successfully, or running and healthy): what podman-compose
        1.6 cannot do on Podman 4.3, where it ignores health conditions (they need 4.6) and
        its `--requires` fails on one-shots that have finished."""
        services: dict[str, Any] = dict(config["services"])
        needs = {name: _conditions(service) for name, service in services.items()}
        finishing = {
            dep
            for wanted in needs.values()
            for dep, condition in wanted.items()
            if condition == "service_completed_successfully"
        }
        started: set[str] = set()
        while len(started) < len(services):
            layer = sorted(
                name for name in services if name not in started and needs[name].keys() <= started
            )
            assert layer, f"depends_on has a cycle among {set(services) - started}"
            self.compose("up", "-d", "--no-deps", *layer)
            self.wait_healthy(
                [name for name in layer if name not in finishing],
                finished=[name for name in layer if name in finishing],
                timeout_s=timeout_s,
            )
            started.update(layer)

    def wait_healthy(
        self, services: Sequence[str], *, finished: Sequence[str] = (), timeout_s: float = 240
    ) -> None:
        """Until each of `services` is running, and healthy where it has a health check, and
        each of `finished` has exited 0; the checks are run every second meanwhile."""
        deadline = time.monotonic() + timeout_s
        while True:
            waiting = [f"{name}: {why}" for name in finished if (why := self._unfinished(name))]
            waiting += [f"{name}: {why}" for name in services if (why := self._unhealthy(name))]
            if not waiting:
                return
            if time.monotonic() > deadline:
                logs = self.logs([*services, *finished], tail=20)
                raise AssertionError(f"still waiting: {waiting}\n{logs}")
            time.sleep(1)

    def logs(self, services: Sequence[str], *, tail: int) -> str:
        """The last `tail` lines each of `services` printed (its standard output, then its
        standard error), under its name."""
        printed = {
            name: self.attempt("logs", "--tail", str(tail), self.container(name))
            for name in services
        }
        return "\n".join(
            f"--- {name}:\n{done.stdout}{done.stderr}" for name, done in printed.items()
        )

    def _unfinished(self, service: str) -> str:
        state = self.inspect(self.container(service))["State"]
        if state["Status"] == "exited" and state["ExitCode"] == 0:
            return ""
        if state["Status"] == "exited":  # a one-shot that failed will not succeed by waiting
            logs = self.run("logs", "--tail", "30", self.container(service), check=False)
            raise AssertionError(f"{service} exited {state['ExitCode']}:\n{logs}")
        return f"{state['Status']} ({state['ExitCode']})"

    def _unhealthy(self, service: str) -> str:
        name = self.container(service)
        state = self.inspect(name)["State"]
        if state["Status"] != "running":
            return str(state["Status"])
        if state.get("Health", {}).get("Status", "") in ("", "healthy"):
            return ""
        self.run("healthcheck", "run", name, check=False, timeout_s=30)
        health = self.inspect(name)["State"]["Health"]["Status"]
        return "" if health == "healthy" else f"health {health}"

    def leftovers(self) -> dict[str, list[str]]:
        """The project's containers, networks, volumes and pod (`pod_<name>`, podman-compose's
        one pod per project, which carries no label) still there."""
        label = ["--filter", f"label={self.label}"]
        found = {
            "container": self.run("ps", "-a", "--format", "{{.Names}}", *label).split(),
            "network": self.run("network", "ls", "--format", "{{.Name}}", *label).split(),
            "volume": self.run("volume", "ls", "--format", "{{.Name}}", *label).split(),
            "pod": self.run(
                "pod", "ls", "--format", "{{.Name}}", "--filter", f"name=^pod_{self.name}$"
            ).split(),
        }
        return {kind: names for kind, names in found.items() if names}

    def remove_everything(self) -> None:
        """Whatever is left, forced out (after a failure; `compose down -v` is the clean way)."""
        for kind, names in self.leftovers().items():
            if kind == "container":
                self.run("rm", "-f", *names, check=False)
            else:
                self.run(kind, "rm", "-f", *names, check=False)


def _conditions(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's `depends_on`: dependency -> condition (a list means service_started)."""
    depends = service.get("depends_on", {})
    if isinstance(depends, list):
        return dict.fromkeys(depends, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in depends.items()}
