"""The chaos run's load: a seeded mix of what clients do, at a bounded rate.

Market orders (some in bursts that fill the cap), limit orders near their trigger,
sniper orders on tokens the run launches later, cancels, short TTLs, Idempotency-Key
retries, requests that are the client's mistake, price moves, and WebSocket watchers
of single orders and of whole users. Clients behave as careful real ones do: a
request that carries an Idempotency-Key is retried (on any API process) after a
transport error or a 503; one without is not, since it may have been stored.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, WebSocketException

from dexecutor import jsoncodec
from tests.chaos.cluster import Cluster, now

USERS = [f"chaos-{i}" for i in range(4)]
SNIPER_TOKENS = ["NOVA", "WARP", "FLUX"]
LIMIT_TOKENS = {"SOL": (Decimal("0.2"), Decimal("2")), "RAY": (Decimal(5), Decimal(40)),
                "JUP": (Decimal(10), Decimal(80))}  # fmt: skip
MARKET_PAIRS = [("SOL", "USDC"), ("USDC", "SOL"), ("SOL", "JUP")]
ACTIONS = {  # relative weights
    "market": 36,
    "socket": 4,  # submit-and-watch on one WebSocket
    "burst": 4,
    "limit": 20,
    "sniper": 9,
    "cancel": 9,
    "bad": 4,
    "price": 4,
}
BAD_BODIES: list[Any] = [
    {"userId": "chaos-0", "tokenIn": "SOL", "tokenOut": "SOL", "amountIn": 1},
    {"userId": "chaos-0", "tokenIn": "SOL", "tokenOut": "USDC", "amountIn": -1},
    {"userId": "chaos-0", "tokenIn": "NOPE", "tokenOut": "USDC", "amountIn": 1},
    {"userId": "chaos-0", "tokenIn": "SOL", "tokenOut": "USDC", "amountIn": 1,
     "slippageBps": 99999},
    {"userId": "chaos-0", "type": "limit", "tokenIn": "SOL", "tokenOut": "USDC", "amountIn": 1},
    {"userId": "bad user!", "tokenIn": "SOL", "tokenOut": "USDC", "amountIn": 1},
    "{not json",
]  # fmt: skip


@dataclass
class Accepted:
    order_id: str
    type: str
    user: str
    key: str | None
    at: datetime


@dataclass
class OrderWatch:
    """A client following one order on any API process, resuming with ?after=."""

    order_id: str
    last: int = 0
    statuses: list[str] = field(default_factory=list)
    gaps: list[tuple[int, int]] = field(default_factory=list)
    repeats: list[int] = field(default_factory=list)  # seqs received twice
    reconnects: int = 0
    closed_normally: bool = False

    def take(self, message: dict[str, Any]) -> None:
        if "seq" not in message:
            return
        seq = int(message["seq"])
        if seq <= self.last:
            self.repeats.append(seq)
            return
        if seq != self.last + 1:
            self.gaps.append((self.last + 1, seq))
        self.last = seq
        self.statuses.append(message["status"])


@dataclass
class UserWatch:
    """A blotter following one user's events; live only, so it misses its gaps."""

    user: str
    segments: list[tuple[datetime, datetime | None]] = field(default_factory=list)
    seen: set[tuple[str, int]] = field(default_factory=set)
    # Per order, the highest seq the current connection has sent. Order holds within one
    # connection: a new one may start an order again from the events of its first
    # seconds (the stream's look-back), which is no disorder.
    latest: dict[str, int] = field(default_factory=dict)
    disorder: list[tuple[str, int, int]] = field(default_factory=list)  # (order, seq, after)


@dataclass
class Load:
    cluster: Cluster
    rng: random.Random
    accepted: dict[str, Accepted] = field(default_factory=dict)
    answers: Counter[tuple[str, str]] = field(default_factory=Counter)
    server_errors: list[dict[str, Any]] = field(default_factory=list)  # 500s
    client_mistake_5xx: list[dict[str, Any]] = field(default_factory=list)
    idempotency_mismatch: list[dict[str, Any]] = field(default_factory=list)
    by_key: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    cancelled_ok: set[str] = field(default_factory=set)
    launched: dict[str, datetime] = field(default_factory=dict)
    order_watches: list[OrderWatch] = field(default_factory=list)
    user_watches: list[UserWatch] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)  # valid orders answered 4xx
    watchers_stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    _watch_tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    _order_tasks: dict[str, asyncio.Task[Any]] = field(default_factory=dict)
    _prices: dict[str, tuple[float, Decimal]] = field(default_factory=dict)
    _limit: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(24))
    _keys: int = 0

    @property
    def http(self) -> httpx.AsyncClient:
        return self.cluster.http

    def _spawn(self, coro: Any, watcher: bool = False) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        tasks = self._watch_tasks if watcher else self._tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task

    async def run(self, stop_at: float, launches: list[tuple[float, str, str]]) -> None:
        """Act until `stop_at` (monotonic); `launches` are (at, token, venue)."""
        for user in USERS:
            watch = UserWatch(user)
            self.user_watches.append(watch)
            self._spawn(self._follow_user(watch), watcher=True)
        pending_launches = sorted(launches)
        while time.monotonic() < stop_at:
            while pending_launches and time.monotonic() >= pending_launches[0][0]:
                _, token, venue = pending_launches.pop(0)
                self._spawn(self.launch(token, venue))
            self._act()
            await asyncio.sleep(self.rng.uniform(0.15, 0.45))
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def launch(self, token: str, venue: str) -> None:
        await self.cluster.call("POST", "/api/mock/launch", json={"token": token, "venue": venue})
        self.launched.setdefault(token, now())

    def _next_key(self) -> str:
        self._keys += 1
        return f"k{self._keys}"

    def _act(self) -> None:
        """Draw one action and its every parameter now (the seed fixes them), then run it."""
        rng = self.rng
        action = rng.choices(list(ACTIONS), weights=list(ACTIONS.values()))[0]
        user = rng.choice(USERS)
        keyed = rng.random() < 0.6
        replay = rng.random() < 0.25
        watched = rng.random() < 0.3
        if action == "market" or action == "burst":
            for _ in range(8 if action == "burst" else 1):
                token_in, token_out = rng.choice(MARKET_PAIRS)
                amount = Decimal(rng.randint(1, 30)) / (1 if token_in == "USDC" else 10)
                body = {"userId": user, "tokenIn": token_in, "tokenOut": token_out,
                        "amountIn": amount, "slippageBps": rng.choice([50, 100, 300])}  # fmt: skip
                key = self._next_key() if keyed else None
                self._spawn(self.submit("market", body, key, replay, watched))
        elif action == "socket":
            body = {"userId": user, "tokenIn": "SOL", "tokenOut": "USDC",
                    "amountIn": Decimal(rng.randint(1, 20)) / 10, "slippageBps": 100}  # fmt: skip
            self._spawn(self.submit_socket(body))
        elif action == "limit":
            token = rng.choice(list(LIMIT_TOKENS))
            low, high = LIMIT_TOKENS[token]
            amount = (low + (high - low) * Decimal(rng.randint(0, 100)) / 100).quantize(
                Decimal("0.01")
            )
            offset = Decimal(rng.randint(-300, 100)) / 10_000  # -3 % .. +1 % of the market
            ttl = rng.choice([None, None, rng.randint(1, 5), rng.randint(5, 60)])
            key = self._next_key() if keyed else None
            self._spawn(self.limit(user, token, amount, offset, ttl, key, replay, watched))
        elif action == "sniper":
            token = rng.choice(SNIPER_TOKENS)
            ttl = rng.choice([None, None, rng.randint(1, 5), rng.randint(5, 90)])
            body = {"userId": user, "type": "sniper", "tokenIn": "SOL", "tokenOut": token,
                    "amountIn": Decimal(rng.randint(1, 5)) / 10,
                    "slippageBps": rng.choice([500, 1000, 2000]), "ttlSeconds": ttl}  # fmt: skip
            key = self._next_key() if keyed else None
            self._spawn(self.submit("sniper", body, key, replay, watched))
        elif action == "cancel":
            self._spawn(self.cancel(rng.random()))
        elif action == "bad":
            self._spawn(self.bad(rng.choice(BAD_BODIES)))
        elif action == "price":
            token = rng.choice(list(LIMIT_TOKENS))
            bps = rng.choice([-200, -100, -50, 50, 100, 200])
            self._spawn(self.move_price(token, bps))

    def _record(self, kind: str, outcome: int | str, detail: dict[str, Any]) -> None:
        self.answers[(kind, str(outcome))] += 1
        if outcome == 500:
            self.server_errors.append({"request": kind, **detail})

    async def submit(
        self, kind: str, body: dict[str, Any], key: str | None, replay: bool, watched: bool
    ) -> str | None:
        headers = {"content-type": "application/json"}
        if key is not None:
            headers["Idempotency-Key"] = key
        content = jsoncodec.dumps({k: v for k, v in body.items() if v is not None})
        deadline = time.monotonic() + 30
        async with self._limit:
            while time.monotonic() < deadline:
                api = self.cluster.live_api()
                if api is None:
                    await asyncio.sleep(0.3)
                    continue
                try:
                    response = await self.http.post(
                        api.url + "/api/orders/execute", content=content, headers=headers
                    )
                except httpx.TransportError as err:
                    self._record(kind, type(err).__name__, {})
                    if key is None:
                        return None  # it may have been stored: a careful client stops here
                    await asyncio.sleep(0.3)
                    continue
                self._record(kind, response.status_code, {"body": response.text[:300]})
                if response.status_code == 202:
                    break
                retry = response.status_code in (429, 503) and key is not None
                if not retry:
                    if 400 <= response.status_code < 500:
                        self.refused[f"{kind}: {response.json().get('error')}"] += 1
                    return None
                await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
            else:
                return None
        order_id = str(response.json()["orderId"])
        self.accepted.setdefault(order_id, Accepted(order_id, kind, body["userId"], key, now()))
        if key is not None:
            self.by_key.setdefault((body["userId"], key), set()).add(order_id)
        if watched:
            watch = OrderWatch(order_id)
            self.order_watches.append(watch)
            self._order_tasks[order_id] = self._spawn(self._follow_order(watch), watcher=True)
        if replay and key is not None:
            await self._replay(kind, content, headers, order_id)
        return order_id

    async def submit_socket(self, body: dict[str, Any]) -> None:
        """Submit on `/api/orders/execute` as a WebSocket and watch the order on it; if the
        socket drops, follow the order on `/ws/orders/{id}` like any watcher."""
        api = self.cluster.live_api()
        if api is None:
            return
        watch: OrderWatch | None = None
        try:
            async with connect(f"{api.process.ws_url}/api/orders/execute", open_timeout=5) as ws:
                await ws.send(jsoncodec.dumps(body).decode())
                first = jsoncodec.loads(await ws.recv())
                if "orderId" not in first:
                    self._record("socket", str(first.get("error")), {"body": str(first)[:300]})
                    return
                self._record("socket", "accepted", {})
                order_id = str(first["orderId"])
                self.accepted.setdefault(order_id, Accepted(order_id, "market", body["userId"],
                                                            None, now()))  # fmt: skip
                watch = OrderWatch(order_id)
                self.order_watches.append(watch)
                async for raw in ws:
                    watch.take(jsoncodec.loads(raw))
                if ws.close_code == 1000:
                    watch.closed_normally = True
                    return
        except (OSError, TimeoutError, InvalidHandshake, WebSocketException) as err:
            self._record("socket", type(err).__name__, {})
        if watch is not None:
            self._order_tasks[watch.order_id] = self._spawn(self._follow_order(watch), True)

    async def _replay(
        self, kind: str, content: bytes, headers: dict[str, str], order_id: str
    ) -> None:
        """The client did not trust the first answer and sends the same request again."""
        api = self.cluster.live_api()
        if api is None:
            return
        try:
            response = await self.http.post(
                api.url + "/api/orders/execute", content=content, headers=headers
            )
        except httpx.TransportError as err:
            self._record("replay", type(err).__name__, {})
            return
        self._record("replay", response.status_code, {"body": response.text[:300]})
        if response.is_success and response.json().get("orderId") != order_id:
            self.idempotency_mismatch.append(
                {"key": headers["Idempotency-Key"], "first": order_id, "again": response.json()}
            )

    async def limit(
        self,
        user: str,
        token: str,
        amount: Decimal,
        offset: Decimal,
        ttl: int | None,
        key: str | None,
        replay: bool,
        watched: bool,
    ) -> None:
        reference = await self._reference(token)
        if reference is None:
            self.answers[("limit", "no price")] += 1
            return
        limit = (reference * (1 + offset)).quantize(Decimal("0.000001"))
        body = {"userId": user, "type": "limit", "tokenIn": token, "tokenOut": "USDC",
                "amountIn": amount, "limitPrice": limit, "slippageBps": 100,
                "ttlSeconds": ttl}  # fmt: skip
        await self.submit("limit", body, key, replay, watched)

    async def _reference(self, token: str) -> Decimal | None:
        cached = self._prices.get(token)
        if cached is not None and time.monotonic() - cached[0] < 5:
            return cached[1]
        api = self.cluster.live_api()
        if api is None:
            return None
        try:
            response = await self.http.get(
                api.url + "/api/market/prices", params={"tokenIn": token, "tokenOut": "USDC"}
            )
        except httpx.TransportError:
            return None
        if response.status_code != 200:
            return None
        price = Decimal(str(jsoncodec.loads(response.content)["reference"]))
        self._prices[token] = (time.monotonic(), price)
        return price

    async def cancel(self, pick: float) -> None:
        recent = list(self.accepted)[-30:]
        api = self.cluster.live_api()
        if not recent or api is None:
            return
        order_id = recent[int(pick * len(recent))]
        try:
            response = await self.http.delete(f"{api.url}/api/orders/{order_id}")
        except httpx.TransportError as err:
            self._record("cancel", type(err).__name__, {})
            return
        self._record("cancel", response.status_code, {"order": order_id, "body": response.text})
        if response.status_code == 200:
            self.cancelled_ok.add(order_id)

    async def bad(self, body: Any) -> None:
        api = self.cluster.live_api()
        if api is None:
            return
        content = body.encode() if isinstance(body, str) else jsoncodec.dumps(body)
        try:
            response = await self.http.post(
                api.url + "/api/orders/execute",
                content=content,
                headers={"content-type": "application/json"},
            )
        except httpx.TransportError as err:
            self._record("bad", type(err).__name__, {})
            return
        self._record("bad", response.status_code, {"body": response.text[:300]})
        if response.status_code >= 500 or response.is_success:
            self.client_mistake_5xx.append(
                {"sent": str(body), "status": response.status_code, "body": response.text[:300]}
            )

    async def move_price(self, token: str, bps: int) -> None:
        api = self.cluster.live_api()
        if api is None:
            return
        try:
            response = await self.http.post(
                api.url + "/api/mock/price", json={"venue": "all", "token": token, "bps": bps}
            )
        except httpx.TransportError as err:
            self._record("price", type(err).__name__, {})
            return
        self._record("price", response.status_code, {"body": response.text[:300]})

    # Watchers -----------------------------------------------------------------------

    async def _follow_order(self, watch: OrderWatch) -> None:
        while not self.watchers_stop.is_set():
            api = self.cluster.live_api()
            if api is not None:
                url = f"{api.process.ws_url}/ws/orders/{watch.order_id}?after={watch.last}"
                try:
                    async with connect(url, open_timeout=5) as ws:
                        async for raw in ws:
                            watch.take(jsoncodec.loads(raw))
                        if ws.close_code == 1000:
                            watch.closed_normally = True
                            return
                except (OSError, TimeoutError, InvalidHandshake, WebSocketException):
                    pass
            watch.reconnects += 1
            await asyncio.sleep(0.3)

    async def _follow_user(self, watch: UserWatch) -> None:
        while not self.watchers_stop.is_set():
            api = self.cluster.live_api()
            if api is not None:
                url = f"{api.process.ws_url}/ws/orders?userId={watch.user}"
                try:
                    async with connect(url, open_timeout=5) as ws:
                        watch.segments.append((now(), None))
                        watch.latest.clear()
                        try:
                            async for raw in ws:
                                message = jsoncodec.loads(raw)
                                if "seq" in message:
                                    order_id, seq = message["orderId"], int(message["seq"])
                                    watch.seen.add((order_id, seq))
                                    latest = watch.latest.get(order_id, 0)
                                    if seq < latest:
                                        watch.disorder.append((order_id, seq, latest))
                                    watch.latest[order_id] = max(latest, seq)
                        finally:
                            watch.segments[-1] = (watch.segments[-1][0], now())
                except (OSError, TimeoutError, InvalidHandshake, WebSocketException):
                    pass
            await asyncio.sleep(0.3)

    async def stop_watchers(self, terminal: set[str], deadline_s: float) -> None:
        """Give the watchers of finished orders `deadline_s` to see the end, then stop all."""
        finishing = [t for oid, t in self._order_tasks.items() if oid in terminal]
        if finishing:
            await asyncio.wait(finishing, timeout=deadline_s)
        self.watchers_stop.set()
        for task in list(self._watch_tasks):
            task.cancel()
        await asyncio.gather(*self._watch_tasks, return_exceptions=True)
