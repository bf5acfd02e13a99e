"""The callers' tables as the contracts tell them: each RPC's `// Callers:` line in protos/ names
exactly the workloads its service's table allows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import auth.callers
import ratelimit.callers
import users.callers
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
