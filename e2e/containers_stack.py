"""`make test-containers`: every image built (on local stand-ins, no registry), compose.yaml run
under Podman with podman-compose, the README's walk from inside the compose network, a service
restarted, each image checked for what a platform team expects, and nothing left behind.

Not part of `make test` (building the images takes minutes): `.ci/run` runs it. Where Podman
cannot run containers, every test is skipped with one line saying why (and fails instead with
TEST_CONTAINERS_REQUIRED=1, as CI sets it)."""

from __future__ import annotations

import os
import secrets
import subprocess
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from meshplate_testing.podman import Project, podman
from meshplate_testing.servers import free_port

from .containers.kube import Played

pytestmark = pytest.mark.timeout(1800)

ROOT = Path(__file__).resolve().parents[1]
CONTAINERS_CONF = ROOT / "deploy" / "podman" / "containers.conf"
SERVICES = ("auth", "users", "ratelimit", "gateway", "worker")
IMAGES_ENV = ROOT / "deploy" / "local" / "images.env"
WALK = ROOT / "e2e" / "containers" / "walk.sh"
# The walk's steps and the statuses the README shows for them.
WALKED = [
    "ready 200",
    "signup 201",
    "profile 200",
    "login 200",
    "me 200",
    "refresh 200",
    "logout 200",
    "me-after-logout 401",
    "task 201",
    "task succeeded Task hello is complete!",
]


def stand_ins() -> dict[str, str]:
    """The stand-ins `make images LOCAL_IMAGES=1` builds, as compose.yaml's image variables."""
    lines = IMAGES_ENV.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


@pytest.fixture(scope="module")
def engine() -> str:
    found, why = podman(CONTAINERS_CONF)
    if found is None and os.environ.get("TEST_CONTAINERS_REQUIRED") == "1":
        pytest.fail(f"TEST_CONTAINERS_REQUIRED, but {why}")  # CI: a skip must not pass
    if found is None:
        pytest.skip(why)
    return found


@dataclass(frozen=True)
class Built:
    """`make images LOCAL_IMAGES=1`'s report (each image with its size), and the commit it was
    built from as its labels should say (`-dirty` when the tree had changes)."""

    report: str
    revision: str


def revision() -> str:
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=ROOT, check=False).returncode
    return f"{head}-dirty" if dirty else head


@pytest.fixture(scope="module")
def built(engine: str) -> Built:
    commit = revision()
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "images.sh")],
        env={
            **os.environ,
            "LOCAL_IMAGES": "1",
            "CONTAINER_ENGINE": engine,
            "CONTAINERS_CONF": str(CONTAINERS_CONF),
        },
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    return Built(done.stdout, commit)


@pytest.fixture(scope="module")
def stack(engine: str, built: Built) -> Iterator[Project]:
    project = Project(
        podman=engine,
        name=f"meshplate-test-{os.getpid()}",
        compose_file=ROOT / "compose.yaml",
        env={
            **stand_ins(),
            "POSTGRES_PASSWORD": secrets.token_urlsafe(16),
            "CONTAINERS_CONF": str(CONTAINERS_CONF),
            "EDGE_PORT": str(free_port()),
            "MAIL_UI_PORT": str(free_port()),
        },
    )
    try:
        project.up_in_order(yaml.safe_load((ROOT / "compose.yaml").read_text()))
        yield project
    finally:
        project.remove_everything()


# The names the stack's containers look each other up by.
NAMES = ("postgres", "redis", "mail", "envoy", *SERVICES)
# Exits 0 once each name given answers within a second, as a Python service resolves it.
LOOKUP = """
import concurrent.futures, os, socket, sys
pool = concurrent.futures.ThreadPoolExecutor(len(sys.argv) - 1)
looks = [pool.submit(socket.getaddrinfo, name, 80) for name in sys.argv[1:]]
done, late = concurrent.futures.wait(looks, timeout=1)
os._exit(0 if not late and all(look.exception() is None for look in done) else 1)
"""


@dataclass(frozen=True)
class Walker:
    """A client container on the project's network, in which every walk runs (`podman exec`).

    Podman 4.3's DNS server (aardvark-dns 1.4) restarts its listeners whenever a container
    joins or leaves a network, and lookups can then fail for seconds at a time, in some
    containers and not others (seen here: 11 s of unanswered queries inside `users` after a
    container started, a lookup of `redis` there failing after 40 s, while the walker's own
    lookups answered). So the walker is started once, not once per walk, and every walk waits
    until every container, the services and the walker, resolves every name promptly."""

    stack: Project
    name: str

    def walk(self, username: str) -> tuple[list[str], str]:
        """The README's walk as `username`: a line per step, and what went wrong if
        something did (with what the services logged)."""
        waited = self.wait_for_names()
        done = self.stack.attempt(
            "exec",
            self.name,
            "/walk.sh",
            "http://envoy:8080",
            "http://mail:8025",
            username,
            timeout_s=300,
        )
        trouble = f"waited {waited:.0f} s for names to answer promptly\n{done.stderr}"
        if done.returncode != 0:
            trouble += "\n" + self.stack.logs(["gateway", "auth", "users", "ratelimit"], tail=40)
        return done.stdout.splitlines(), trouble

    def wait_for_names(self, *, rounds: int = 3, timeout_s: float = 120) -> float:
        """Seconds waited until, `rounds` times in a row, each container resolved every name
        within a second."""
        containers = [*(self.stack.container(service) for service in SERVICES), self.name]
        started = time.monotonic()
        prompt = 0
        while prompt < rounds:
            answered = all(
                self.stack.attempt("exec", container, "python3", "-c", LOOKUP, *NAMES).returncode
                == 0
                for container in containers
            )
            prompt = prompt + 1 if answered else 0
            waited = time.monotonic() - started
            assert waited < timeout_s, f"names still unanswered after {waited:.0f} s"
            if prompt < rounds:
                time.sleep(1)
        return time.monotonic() - started

    def remove(self) -> None:
        self.stack.run("rm", "--force", "--time", "0", self.name, check=False)


@pytest.fixture(scope="module")
def walker(stack: Project) -> Iterator[Walker]:
    found = Walker(stack, f"{stack.name}_walker")
    stack.run(
        "run",
        "--detach",
        "--name",
        found.name,
        "--network",
        f"{stack.name}_default",
        "--volume",
        f"{WALK}:/walk.sh:ro",
        "--entrypoint",
        "sleep",
        stand_ins()["CURL_IMAGE"],
        "infinity",
    )
    try:
        yield found
    finally:
        found.remove()


def image(service: str) -> str:
    return f"meshplate/{service}:local"


def test_make_images_builds_every_service_and_reports_its_size(built: Built) -> None:
    sizes = dict(line.split(" ", 1) for line in built.report.splitlines())

    assert {name.removeprefix("localhost/") for name in sizes} == {
        f"meshplate/{service}:local" for service in SERVICES
    }
    assert all(size.strip().endswith(("MB", "GB")) for size in sizes.values()), sizes


def test_the_readme_walk_passes_through_envoy_inside_the_network(walker: Walker) -> None:
    lines, trouble = walker.walk("ann")

    assert lines[: len(WALKED)] == WALKED, trouble
    assert "ann@example.com" in lines[-1].split(), trouble


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_runs_as_10001_on_a_read_only_root_and_answers_its_health_check(
    stack: Project, service: str
) -> None:
    container = stack.container(service)
    inspected = stack.inspect(container)

    assert inspected["Config"]["User"] == "10001:10001"
    assert stack.run("exec", container, "id", "-u").strip() == "10001"
    assert inspected["HostConfig"]["ReadonlyRootfs"] is True
    refused = stack.attempt("exec", container, "touch", "/app/anything")
    assert refused.returncode != 0
    assert "Read-only file system" in refused.stderr
    # /tmp, the one scratch space (a tmpfs), takes writes.
    stack.run("exec", container, "touch", "/tmp/anything")
    # The image's own HEALTHCHECK (compose's gateway probes over HTTPS instead).
    check = stack.run("image", "inspect", image(service), "--format", "{{json .HealthCheck.Test}}")
    assert "meshplate_core.probe" in check
    stack.run("healthcheck", "run", container)
    assert stack.inspect(container)["State"]["Health"]["Status"] == "healthy"


@pytest.mark.parametrize("service", SERVICES)
def test_each_image_carries_its_oci_labels(stack: Project, built: Built, service: str) -> None:
    labels = stack.inspect(image(service))["Labels"]
    project = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())

    assert labels["org.opencontainers.image.version"] == project["project"]["version"]
    assert labels["org.opencontainers.image.revision"] == built.revision
    assert labels["org.opencontainers.image.source"]
    assert labels["org.opencontainers.image.title"] == f"meshplate-{service}"


# Run as root in the image, so nothing is hidden by permissions: any line printed is a finding.
FINDINGS = r"""
for tool in gcc cc c++ g++ clang ld make uv; do command -v "$tool"; done
find / -xdev \( -type d \( -name tests -o -name test \) -o -name conftest.py \
    -o -name '*.deb' -o -name '*.whl' \) -print
find /root/.cache /var/cache/apt/archives /var/lib/apt/lists -mindepth 1 \
    -not -name lock -not -name partial -not -name auxfiles 2>/dev/null
exit 0
"""


@pytest.mark.parametrize("service", SERVICES)
def test_each_image_holds_no_compiler_package_cache_or_test_file(
    stack: Project, service: str
) -> None:
    found = stack.run(
        "run", "--rm", "--user", "0", "--entrypoint", "sh", image(service), "-c", FINDINGS
    )

    assert found.split() == []


def test_a_restarted_service_recovers(stack: Project, walker: Walker) -> None:
    stack.run("restart", "--time", "30", stack.container("users"))
    stack.wait_healthy(["users"], timeout_s=120)

    # Callers' connections to the old process fail fast (503) until they reconnect: recovered
    # once the whole walk passes again, a new user each try, within a minute.
    deadline, attempt = time.monotonic() + 60, 0
    while True:
        attempt += 1
        lines, trouble = walker.walk(f"bob{attempt}")
        if lines[: len(WALKED)] == WALKED or time.monotonic() > deadline:
            break
        time.sleep(2)

    assert lines[: len(WALKED)] == WALKED, trouble


def test_kube_play_runs_the_dev_overlays_deployments(stack: Project, tmp_path: Path) -> None:
    # The dev overlay's Deployments as `kubectl kustomize` renders them, on the compose network
    # (its PostgreSQL, Redis and services answer the pods' names), on the images just built.
    images = stand_ins()
    played = Played.prepare(stack, tmp_path, envoy_image=images["ENVOY_IMAGE"])
    try:
        played.start()
        assert {pod.name for pod in played.pods} == {*SERVICES, "envoy"}
        for pod in played.pods:
            probed = played.probe(pod, curl_image=images["CURL_IMAGE"])
            assert probed == [f"{pod.name} {kind}: ok" for kind in pod.probes], probed
            if pod.name != "envoy":  # ours: the manifests' security context applied
                inspected = stack.inspect(pod.container)
                assert inspected["Config"]["User"] == "10001:10001"
                assert inspected["HostConfig"]["ReadonlyRootfs"] is True
    finally:
        played.stop()
    assert played.leftovers() == []


@pytest.mark.parametrize("service", ["gateway", "worker", "auth", "users", "ratelimit"])
def test_each_service_stops_by_itself_on_sigterm_within_its_grace(
    stack: Project, service: str
) -> None:
    # Podman sends SIGTERM, then SIGKILL after compose's stop_grace_period: exit code 0 says the
    # process ended on its own (SIGKILL would give 137).
    grace = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"][service]
    seconds = str(int(grace["stop_grace_period"].removesuffix("s")))
    container = stack.container(service)
    stack.run("stop", "--time", seconds, container)

    state = stack.inspect(container)["State"]

    assert (state["Status"], state["ExitCode"], state["OOMKilled"]) == ("exited", 0, False)


def test_down_leaves_no_container_network_or_volume(stack: Project, walker: Walker) -> None:
    walker.remove()  # not compose's: it would keep the network from being removed
    assert stack.leftovers().keys() == {"container", "network", "volume", "pod"}  # found first
    stack.compose("down", "--volumes")

    assert stack.leftovers() == {}
