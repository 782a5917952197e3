"""Property-based fuzzing of every endpoint from the app's own OpenAPI schema.

Schemathesis generates valid and invalid requests for each operation; no answer may
be a 5xx, and every answer must match what the schema declares. A server of its own:
fuzzed mock controls arm faults and move prices. Bounded so CI spends about a minute.
(Driven directly rather than through schemathesis' pytest plugin, which does not
support this pytest version.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from tests.support import Process, free_port, isolated, serving

CHECKS = [not_a_server_error, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
async def fuzz_server() -> AsyncIterator[Process]:
    async with isolated("dxz") as iso:
        env = iso.env(RATE_LIMIT_PER_USER="0", RATE_LIMIT_PER_ADDRESS="0")
        proc = Process("up", env, port=free_port())
        async with serving(proc):
            yield proc


def test_no_server_errors_and_responses_match_the_schema(fuzz_server: Process) -> None:
    api = schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 15
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def fuzz(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=CHECKS, timeout=15)

        try:
            fuzz()
        except Exception as err:  # gather every operation's failure, then report them all
            failures.append(f"{operation.label}: {str(err)[:1500]}")
    assert not failures, "\n\n".join(failures)
