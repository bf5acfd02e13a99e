"""Schemathesis against the gateway's own OpenAPI document: every phase (the schema's examples,
its boundaries, random inputs, and stateful sequences of calls), anonymously and with a user's
token, with a fixed seed and a bounded number of examples. It fails on any server error, and on
any answer the document does not declare (status, headers, body), so the document and the code
agree."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from .conftest import Stack
from .identity import log_in, sign_up

# Examples per operation and phase: well under a minute for both runs on two cores.
EXAMPLES = 25
SEED = 20261130
# The checks Schemathesis knows that our contract does not promise, each with the reason:
EXCLUDED = [
    # "Valid" inputs of the schema may still name nothing (a user, a tier, a post): 404 is the
    # right answer, not a 2xx.
    "positive_data_acceptance",
]


async def _schemathesis(url: str, tmp_path: Path, *headers: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--exclude-checks",
        ",".join(EXCLUDED),
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        str(SEED),
        "--generation-database",
        "none",
        "--request-timeout",
        "10",
        "--no-color",
        *[arg for header in headers for arg in ("--header", header)],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        # Its caches and reports go there, not into the checkout.
        cwd=tmp_path,
    )
    output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


@pytest.mark.timeout(600)
async def test_no_input_gives_a_server_error_or_an_undeclared_answer(
    stack: Stack, tmp_path: Path
) -> None:
    async with stack.client(stack.gateway_url) as client:
        await sign_up(client, "fuzzer")
        token, _ = await log_in(client, "fuzzer")

    anonymous = await _schemathesis(stack.gateway_url, tmp_path)
    signed_in = await _schemathesis(stack.gateway_url, tmp_path, f"Authorization: Bearer {token}")

    assert anonymous[0] == 0, anonymous[1][-6000:]
    assert signed_in[0] == 0, signed_in[1][-6000:]
