"""Property-based fuzzing of every endpoint from the app's own OpenAPI schema.

Schemathesis' own runner (`st run`, the command a user would type) generates valid and
invalid requests for each operation, in its examples, coverage, fuzzing and stateful
phases; no answer may be a 5xx, every status and body must be one the schema declares,
and any warning (an operation that only ever answered 404, or only 4xx for data the
schema calls valid) fails the run too. A server of its own: fuzzed mock controls arm
faults and move prices. Deterministic and bounded so CI spends well under a minute.

Checks left out, and why: `positive_data_acceptance` and `negative_data_rejection`
would need the schema to state rules JSON Schema cannot (tokenIn differs from tokenOut,
an amount within the token's precision, symbols in any case); `use_after_free` expects
a DELETE to remove the resource, while ours cancels an order that stays readable.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.support import Process, free_port, isolated, order_body, serving

CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
    "ensure_resource_availability",
]
SCHEMATHESIS = str(Path(sys.executable).with_name("st"))


@pytest.fixture(scope="module")
async def fuzz_server() -> AsyncIterator[Process]:
    async with isolated("dxz") as iso:
        env = iso.env(RATE_LIMIT_PER_USER="0", RATE_LIMIT_PER_ADDRESS="0")
        proc = Process("up", env, port=free_port())
        async with serving(proc):
            yield proc


async def test_schemathesis_finds_no_failures_and_no_warnings(
    fuzz_server: Process, tmp_path: Path
) -> None:
    # A real order for the operations that take an order id: a limit order far above
    # the market waits, so reading and cancelling it reach the code past the 404.
    async with httpx.AsyncClient(base_url=fuzz_server.url) as client:
        body = order_body(userId="user1", type="limit", limitPrice=100000, ttlSeconds=600)
        accepted = await client.post("/api/orders/execute", json=body)
        assert accepted.status_code == 202, accepted.text
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        f'[parameters]\norder_id = "{accepted.json()["orderId"]}"\n\n'
        "[warnings]\nfail-on = true\n\n"
        # A quote takes amountIn (ExactIn) or amountOut and maxAmountIn (ExactOut): a rule
        # between parameters that a schema cannot state, so a phase's generated cases may
        # all be rightly refused. For it alone, the warnings about refused valid data
        # (validation_mismatch, and missing_test_data, which it shares a trigger with and
        # which cannot apply: a quote names no resource) are off; its checks stay on.
        '[[operations]]\ninclude-path = "/api/quote"\n'
        'warnings = ["missing_auth", "method_not_allowed"]\n\n'
        "[cache]\nenabled = false\n"  # and run in tmp_path: no state left in the work tree
    )
    run = await asyncio.to_thread(
        subprocess.run,
        [SCHEMATHESIS, "--config-file", str(config), "run", f"{fuzz_server.url}/openapi.json",
         "--checks", ",".join(CHECKS), "--max-examples", "25", "--generation-deterministic",
         "--request-timeout", "15", "--no-color"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-12000:]
    selected = re.search(r"Selected: (\d+)/", report)
    assert selected is not None, report[-4000:]
    assert f"Tested: {selected[1]}" in report, report[-4000:]  # every operation ran
    assert "Warnings:" not in report, report[-4000:]
