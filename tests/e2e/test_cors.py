"""CORS: off by default; with CORS_ORIGINS, those browser origins (and only those) may
call the API, the submission fast path included."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support import Process, chained, free_port, order_body, service_env, serving

ALLOWED = "https://blotter.example"


@pytest.fixture(scope="module")
async def cors_server(database: str, namespace: str) -> AsyncIterator[Process]:
    env = service_env(database, namespace, CORS_ORIGINS=f"{ALLOWED}, http://localhost:5173")
    chain, env = chained(env)
    proc = Process("api", env, port=free_port())
    async with serving(chain, proc):
        yield proc


def preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "content-type,x-api-key,idempotency-key",
    }


@pytest.mark.parametrize("path", ["/api/orders/execute", "/api/orders"])
async def test_a_listed_origin_passes_the_preflight(cors_server: Process, path: str) -> None:
    async with httpx.AsyncClient(base_url=cors_server.url) as c:
        response = await c.options(path, headers=preflight(ALLOWED))
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == ALLOWED
    allowed = response.headers["access-control-allow-headers"].lower()
    assert {"content-type", "x-api-key", "idempotency-key"} <= set(allowed.split(", "))
    assert "POST" in response.headers["access-control-allow-methods"]


async def test_an_unlisted_origin_fails_the_preflight(cors_server: Process) -> None:
    async with httpx.AsyncClient(base_url=cors_server.url) as c:
        response = await c.options("/api/orders/execute", headers=preflight("https://evil.example"))
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


async def test_answers_carry_the_headers_for_a_listed_origin_only(cors_server: Process) -> None:
    async with httpx.AsyncClient(base_url=cors_server.url) as c:
        allowed = await c.post(
            "/api/orders/execute", json=order_body(userId="cors"), headers={"Origin": ALLOWED}
        )
        refused = await c.post(  # a refusal is readable by the page too
            "/api/orders/execute", content=b"{", headers={"Origin": ALLOWED,
                                                          "content-type": "application/json"}
        )  # fmt: skip
        other = await c.post(
            "/api/orders/execute",
            json=order_body(userId="cors"),
            headers={"Origin": "https://evil.example"},
        )
    assert allowed.status_code == 202 and refused.status_code == 400
    for response in (allowed, refused):
        assert response.headers["access-control-allow-origin"] == ALLOWED
        assert "Idempotent-Replayed" in response.headers["access-control-expose-headers"]
    assert other.status_code == 202  # CORS binds browsers, not servers
    assert "access-control-allow-origin" not in other.headers


async def test_cors_is_off_by_default(client: httpx.AsyncClient) -> None:
    response = await client.options("/api/orders", headers=preflight(ALLOWED, "GET"))
    assert "access-control-allow-origin" not in response.headers
    answer = await client.get("/api/tokens", headers={"Origin": ALLOWED})
    assert answer.status_code == 200 and "access-control-allow-origin" not in answer.headers
