"""The callers' tables as the contracts tell them: each RPC's `// Callers:` line in protos/ names
exactly the workloads its service's table allows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import auth.callers
import ratelimit.callers
import users.callers
from meshplate.client import SERVICES, is_idempotent
from meshplate_core.callers import Callers

PROTOS = Path(__file__).resolve().parents[1] / "protos" / "meshplate"
_CALLERS = re.compile(r"//\s*Callers:\s*(?P<who>[^.]*)\.\s*\n\s*rpc (?P<rpc>\w+)\(")
_RPC = re.compile(r"^\s*rpc (\w+)\(", re.MULTILINE)


@pytest.mark.parametrize(
    ("proto", "table"),
    [
        ("auth/v1/auth.proto", auth.callers.callers()[0]),
        ("users/v1/users.proto", users.callers.callers()[0]),
        ("ratelimit/v1/ratelimit.proto", ratelimit.callers.callers()[0]),
    ],
    ids=["auth", "users", "ratelimit"],
)
def test_each_rpc_comment_names_the_callers_of_its_table(proto: str, table: Callers) -> None:
    text = (PROTOS / proto).read_text()
    documented = {
        match["rpc"]: {who.strip() for who in match["who"].split(",")}
        for match in _CALLERS.finditer(text)
    }

    assert set(_RPC.findall(text)) == set(documented), "an RPC without a `// Callers:` line"
    assert documented == {name: set(table.allowed(name)) for name in documented}


def test_the_guides_table_of_retried_rpcs_is_the_contracts() -> None:
    # docs/grpc.md tells other teams which calls the channel retries; the protos decide it.
    guide = (PROTOS.parents[1] / "docs" / "grpc.md").read_text()
    rows = {
        cells[0]: (set(cells[1].split(", ")), set(cells[2].split(", ")))
        for line in guide.splitlines()
        if (cells := [c.strip() for c in line.strip("|").split("|")])[0] in SERVICES
    }

    assert rows == {
        name: (
            {m.name for m in service.methods if is_idempotent(m)},
            {m.name for m in service.methods if not is_idempotent(m)},
        )
        for name, service in SERVICES.items()
    }
