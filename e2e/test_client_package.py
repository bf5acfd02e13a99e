"""meshplate-api as another team gets it: `make dist`'s wheel installed into a fresh virtual
environment (nothing else of Meshplate in it), its example calling the running users service as
a workload the operator granted GetUser."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from meshplate.client import Workload

from .conftest import Stack
from .identity import ADMIN

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "libs" / "meshplate-api" / "examples" / "get_user.py"
# The versions the workspace runs (pyproject.toml's constraints), so the install is the same
# every time and comes from uv's cache once fetched.
PINS = ("grpcio==1.85.1", "protobuf==7.36.2")


def _uv() -> str:
    found = shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
    assert Path(found).exists(), "uv not found: run `make install` first"
    return found


@pytest.fixture(scope="module")
def client_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the built wheel installed; its Python."""
    work = tmp_path_factory.mktemp("client-package")
    uv = _uv()

    def run(*argv: str) -> None:
        subprocess.run(argv, cwd=ROOT, check=True, capture_output=True, timeout=300)

    run(uv, "build", "--package", "meshplate-api", "--out-dir", str(work / "dist"), "--quiet")
    [wheel] = (work / "dist").glob("meshplate_api-*.whl")
    run(uv, "venv", "--quiet", "--python", sys.executable, str(work / "venv"))
    python = work / "venv" / "bin" / "python"
    constraints = work / "constraints.txt"
    constraints.write_text("\n".join(PINS) + "\n")
    run(
        uv, "pip", "install", "--quiet", "--python", str(python), "-c", str(constraints), str(wheel)
    )
    return python


def _run(python: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), *argv], capture_output=True, text=True, timeout=60, check=False, cwd="/"
    )


def test_the_wheel_carries_the_contracts_alone(client_python: Path) -> None:
    listed = _run(
        client_python,
        "-c",
        "import importlib.util as u, meshplate, pathlib;"
        "root = pathlib.Path(meshplate.__file__).parent;"
        "print(sorted(p.name for p in root.rglob('*.proto')));"
        "print((root / 'py.typed').exists(), (root / 'users/v1/users_pb2_grpc.pyi').exists());"
        "print(u.find_spec('meshplate_core'), u.find_spec('users'))",
    )

    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == [
        "['auth.proto', 'ratelimit.proto', 'users.proto']",
        "True True",
        "None None",
    ]


async def test_the_example_reads_a_user_as_a_granted_workload(
    stack: Stack, client_python: Path
) -> None:
    await stack.stop("users")
    await stack.start("users", grants={"reports": ["GetUser"]})
    target = f"127.0.0.1:{stack.ports['users']}"

    def example(workload: str) -> subprocess.CompletedProcess[str]:
        folder = str(stack.workload_tls(workload).folder)
        return _run(client_python, str(EXAMPLE), target, folder, ADMIN[0])

    granted, refused = await asyncio.gather(
        asyncio.to_thread(example, "reports"), asyncio.to_thread(example, "billing")
    )

    assert granted.returncode == 0, granted.stderr
    assert granted.stdout.split()[1:] == [ADMIN[0], "Admin"]
    assert refused.returncode == 1
    assert refused.stderr.startswith("PERMISSION_DENIED: billing may not call")


async def test_any_workload_of_the_ca_lists_the_services_with_reflection(stack: Stack) -> None:
    # docs/grpc.md's snippet, as a workload no table names.
    me = Workload.from_folder(stack.workload_tls("billing").folder)
    target = f"127.0.0.1:{stack.ports['users']}"

    def listed() -> list[str]:
        options = [("grpc.ssl_target_name_override", "users")]
        with grpc.secure_channel(target, me.credentials(), options) as channel:
            return sorted(ProtoReflectionDescriptorDatabase(channel).get_services())

    assert await asyncio.to_thread(listed) == [
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "meshplate.users.v1.UsersService",
    ]
