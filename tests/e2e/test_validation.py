"""Every validation rule of the order body: a 4xx with the error shape, nothing stored."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest

from tests.support import order_body

USER = "validation-user"


def bad(**fields: Any) -> dict[str, Any]:
    return order_body(**{"userId": USER, **fields})


BAD_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("missing userId", bad(userId=None), "userId"),
    ("empty userId", bad(userId=""), "userId"),
    ("userId too long", bad(userId="u" * 65), "userId"),
    ("userId with a space", bad(userId="a b"), "userId"),
    ("userId not a string", bad(userId=42), "userId"),
    ("unknown type", bad(type="stop"), "type"),
    ("missing tokenIn", bad(tokenIn=None), "tokenIn"),
    ("unknown tokenIn", bad(tokenIn="DOGE"), "tokenIn"),
    ("unknown tokenOut", bad(tokenOut="XYZ"), "tokenOut"),
    ("same token both sides", bad(tokenIn="usdc", tokenOut="USDC"), "tokenIn"),
    ("missing amountIn", bad(amountIn=None), "amountIn"),
    ("zero amount", bad(amountIn=0), "amountIn"),
    ("negative amount", bad(amountIn=-2), "amountIn"),
    ("amount as string", bad(amountIn="2"), "amountIn"),
    ("amount as boolean", bad(amountIn=True), "amountIn"),
    (
        "too many decimals for USDC",
        bad(tokenIn="USDC", tokenOut="SOL", amountIn=1.0000001),
        "amountIn",
    ),
    ("over the maximum", bad(amountIn=10**15), "amountIn"),
    ("slippage above 5000", bad(slippageBps=5001), "slippageBps"),
    ("negative slippage", bad(slippageBps=-1), "slippageBps"),
    ("fractional slippage", bad(slippageBps=1.5), "slippageBps"),
    ("unknown field", bad(slipageBps=10), "slipageBps"),
    ("limit fields on a market order", bad(limitPrice=100), "limitPrice"),
]


async def count(db: asyncpg.Connection) -> int:
    return int(await db.fetchval("SELECT count(*) FROM orders"))


@pytest.mark.parametrize(("case", "body", "field"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
async def test_invalid_order_is_422_and_stores_nothing(
    client: httpx.AsyncClient, db: asyncpg.Connection, case: str, body: dict[str, Any], field: str
) -> None:
    before = await count(db)
    response = await client.post("/api/orders/execute", json=body)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["error"] == "validation_error"
    assert field in error["message"] or any(
        field in d["field"] or field in d["message"] for d in error.get("details", [])
    )
    assert await count(db) == before


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        (b"", "application/json", 400, "invalid_json"),
        (b"{not json", "application/json", 400, "invalid_json"),
        (b"null", "application/json", 422, "validation_error"),
        (b"[1, 2]", "application/json", 422, "validation_error"),
        (b'{"amountIn": NaN}', "application/json", 400, "invalid_json"),
        (b"userId=u", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ],
)
async def test_malformed_bodies_are_4xx(
    client: httpx.AsyncClient, content: bytes, content_type: str, status: int, code: str
) -> None:
    response = await client.post(
        "/api/orders/execute", content=content, headers={"content-type": content_type}
    )
    assert response.status_code == status
    assert response.json()["error"] == code
    assert isinstance(response.json()["message"], str)


async def test_token_symbols_are_case_insensitive(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/orders/execute", json=order_body(tokenIn="sol", tokenOut="usdc")
    )
    assert response.status_code == 202
    record = (await client.get(f"/api/orders/{response.json()['orderId']}")).json()
    assert (record["tokenIn"], record["tokenOut"]) == ("SOL", "USDC")


async def test_defaults_market_type_and_50_bps(client: httpx.AsyncClient) -> None:
    body = order_body(slippageBps=None)
    response = await client.post("/api/orders/execute", json=body)
    record = (await client.get(f"/api/orders/{response.json()['orderId']}")).json()
    assert (record["type"], record["slippageBps"]) == ("market", 50)


async def test_amounts_keep_every_digit(client: httpx.AsyncClient) -> None:
    raw = b'{"userId":"precise","tokenIn":"SOL","tokenOut":"USDC","amountIn":1.123456789}'
    response = await client.post(
        "/api/orders/execute", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 202
    record = await client.get(f"/api/orders/{response.json()['orderId']}")
    assert b'"amountIn":1.123456789' in record.content


@pytest.mark.parametrize(
    "path", ["/api/orders/not-a-uuid", "/api/orders/status/123", "/api/orders/x/events"]
)
async def test_malformed_order_id_is_400(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_order_id"


async def test_unknown_order_is_404_with_error_shape(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/orders/00000000-0000-4000-8000-000000000000")
    assert response.status_code == 404
    assert set(response.json()) == {"error", "message"}


async def test_unknown_route_uses_the_error_shape(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


async def test_history_requires_a_valid_user(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/orders")
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"
    bad_status = await client.get("/api/orders", params={"userId": "u", "status": "done"})
    assert bad_status.status_code == 422


async def test_other_methods_on_the_submission_path_are_405(client: httpx.AsyncClient) -> None:
    """Not read as `GET /api/orders/{id}` with the id "execute"."""
    for method in ("GET", "PUT", "DELETE"):
        response = await client.request(method, "/api/orders/execute")
        assert response.status_code == 405, (method, response.text)
        assert response.json()["error"] == "method_not_allowed"
        assert response.headers["Allow"] == "POST"


async def test_the_schema_documents_every_refusal_of_a_submission(
    client: httpx.AsyncClient,
) -> None:
    """Each status the submission can answer is in the schema; keys are optional here."""
    schema = (await client.get("/openapi.json")).json()
    submit = schema["paths"]["/api/orders/execute"]["post"]
    assert set(submit["responses"]) == {
        "202", "400", "401", "403", "409", "413", "415", "422", "429", "503"
    }  # fmt: skip
    assert submit["security"] == [{"ApiKey": []}, {"Bearer": []}, {}]  # no API_KEYS set
    body = submit["requestBody"]["content"]["application/json"]["schema"]
    assert "userId" not in body["required"] and "tokenIn" in body["required"]


async def test_a_405_lists_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    """Not only those of the first route that matched (GET of /api/orders/{id})."""
    order = "/api/orders/00000000-0000-4000-8000-000000000000"
    for path, allowed in ((order, "DELETE, GET"), ("/api/mock/faults", "DELETE, GET, POST")):
        response = await client.put(path)
        assert response.status_code == 405
        assert response.headers["Allow"] == allowed
        assert response.json()["error"] == "method_not_allowed"
