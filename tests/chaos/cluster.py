"""The deployment the chaos run breaks, and the faults it injects into it.

Two API and two worker processes reach a PostgreSQL and a Redis of the run's own
through TCP proxies, so each backend can be cut (proxy down: connections reset, new
ones refused) or really stopped and started (the server process itself). They all
trade on one chain process (the market and its ledger), which keeps its state in the
same PostgreSQL but reaches it directly: a proxy cut is an outage of the engine's
database only, while a PostgreSQL restart hits the chain too. The harness also
supervises the processes as a process manager would: one that exits on its own is
restarted, and counted.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import signal
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis
from redis.exceptions import RedisError

from dexecutor import jsoncodec
from dexecutor.bench import free_port
from tests.support import (
    TEST_FUNDING,
    PrivatePostgres,
    PrivateRedis,
    Process,
    TcpProxy,
    chain_process,
    service_env,
    via_proxy,
)

CAP = 5  # MAX_CONCURRENT_ORDERS of the run: low, so the load reaches it
NAMESPACE = "chaos"
# How long after a backend fault heals the cap may be overshot (docs/reliability.md):
# BullMQ's view of the running jobs lives in Redis and is rebuilt by lock expiry (6 s)
# and the reconciler (1 s here), which puts orders that were executing at the head of
# the queue; an attempt met by an outage keeps its slot and retries in place, but
# while Redis is away its lock may lapse and another worker run it too.
CAP_WINDOW_S = 15.0
# A blockhash is valid for this many slots (12 s at 400 ms): a dropped transaction is
# known dead, and its order re-signed, in seconds rather than the minute of mainnet.
BLOCKHASH_SLOTS = 30
# What each user's wallet starts with: the tests' grant and JUP, which limit orders sell
# too, so `insufficient_funds` never stands in for a fault.
FUNDING = TEST_FUNDING + ",JUP:1000000"


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Node:
    """One `dexecutor` process of the deployment, across its restarts."""

    name: str
    process: Process
    out: Path
    incarnation: int = 0
    unexpected_exits: int = 0
    killed: bool = False  # down on purpose (a fault); the supervisor leaves it alone

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def is_api(self) -> bool:
        return self.process.command == "api"

    @property
    def is_worker(self) -> bool:
        return self.process.command == "worker"

    def running(self) -> bool:
        proc = self.process.proc
        return proc is not None and proc.poll() is None

    def start(self) -> None:
        self.incarnation += 1
        self.process.log_path = self.out / f"{self.name}.{self.incarnation}.log"
        self.process.start()
        self.killed = False

    async def kill(self) -> None:
        self.killed = True
        proc = self.process.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(proc.wait)


@dataclass
class Fault:
    """One injected fault: what, when it began, when it was healed."""

    kind: str
    detail: str
    started: datetime
    healed: datetime | None = None
    skipped: str | None = None  # why it was not injected (its target was already down)

    @property
    def backend(self) -> bool:
        """An outage of something the engine depends on (not one of its own processes):
        a job attempt that fails on it leaves its order in an executing status until
        its retry, which opens the cap's window."""
        return self.kind.startswith(("redis", "pg")) or self.kind == "kill_chain"


KINDS: dict[str, float] = {  # relative weights of the fault kinds
    "kill_api": 2,
    "kill_worker": 3,
    "redis_restart": 1.5,
    "redis_cut": 1,
    "pg_cut": 1.5,
    "pg_restart": 1.5,
    "kill_chain": 1.5,
    "venue": 2.5,
    # Transactions that land late (their engine already rebroadcasting), and a worker
    # killed while they are in flight: the order is resumed by another worker, which
    # must wait for the same signature, never sign a second swap before expiry.
    "late_crash": 2,
}
# Venue faults: quotes that fail, and transactions that never land (`drop`, `expire`:
# every broadcast lost until the blockhash expires), land late or at a moved price.
VENUE_KINDS = ["error", "timeout", "drop", "expire", "late", "price"]


@dataclass
class Cluster:
    out: Path
    seed: int
    pg: PrivatePostgres = field(default_factory=PrivatePostgres)
    redis: PrivateRedis | None = None
    pg_proxy: TcpProxy | None = None
    redis_proxy: TcpProxy | None = None
    dsn: str = ""
    nodes: list[Node] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    busy: set[str] = field(default_factory=set)  # targets under a fault right now
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    outages: set[asyncio.Task[None]] = field(default_factory=set)  # faults healing themselves
    http: httpx.AsyncClient = field(default_factory=lambda: httpx.AsyncClient(timeout=10))
    chooser: random.Random = field(default_factory=random.Random)
    milestones: list[tuple[datetime, str]] = field(default_factory=list)
    stalls: list[tuple[datetime, float]] = field(default_factory=list)  # our own event loop

    async def start(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        self.chooser.seed(self.seed * 7919)
        await self.pg.start()
        self.dsn = await self.pg.create_database("chaos")
        self.redis = PrivateRedis(self.out)
        await self.redis.start()
        self.pg_proxy = TcpProxy(("127.0.0.1", self.pg.port))
        self.redis_proxy = TcpProxy(("127.0.0.1", self.redis.port))
        await self.pg_proxy.up()
        await self.redis_proxy.up()
        env = service_env(
            via_proxy(self.dsn, self.pg_proxy.port),
            NAMESPACE,
            REDIS_URL=f"redis://127.0.0.1:{self.redis_proxy.port}",
            MAX_CONCURRENT_ORDERS=str(CAP),
            MOCK_SEED=str(self.seed),
            MOCK_SWAP_LATENCY_MS="100-400",
            RECONCILE_INTERVAL_MS="1000",
            TRIGGER_INTERVAL_MS="200",
            PG_POOL_SIZE="8",
            RATE_LIMIT_PER_USER="0",
            CHAIN_BLOCKHASH_SLOTS=str(BLOCKHASH_SLOTS),
            DEV_FUNDING=FUNDING,
        )
        # The chain is separate infrastructure: straight to PostgreSQL, not via the proxy.
        chain = Node("chain", chain_process({**env, "DATABASE_URL": self.dsn}), self.out)
        self.nodes.append(chain)
        chain.start()
        await chain.process.wait_ready(60)
        env["CHAIN_URL"] = chain.url
        for i in (1, 2):
            api = Process("api", env, port=free_port())
            self.nodes.append(Node(f"api-{i}", api, self.out))
        for i in (1, 2):
            self.nodes.append(Node(f"worker-{i}", Process("worker", env), self.out))
        for node in self.nodes:
            if node is not chain:
                node.start()
        await asyncio.gather(*(n.process.wait_ready(60) for n in self.apis))
        self._spawn(self._supervise())
        self._spawn(self._watch_loop())
        self.milestone("deployment up")

    def milestone(self, text: str) -> None:
        self.milestones.append((now(), text))
        print(f"{now():%H:%M:%S} {text}", flush=True)

    async def _watch_loop(self) -> None:
        """Record any stall of this event loop: the proxies run on it, so a stall here
        would look like a network fault to the deployment and must not be blamed on it."""
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.1)
            late = time.monotonic() - before - 0.1
            if late > 0.5:
                self.stalls.append((now(), late))

    @property
    def apis(self) -> list[Node]:
        return [n for n in self.nodes if n.is_api]

    @property
    def workers(self) -> list[Node]:
        return [n for n in self.nodes if n.is_worker]

    @property
    def chain(self) -> Node:
        return next(n for n in self.nodes if n.process.command == "chain")

    def live_api(self) -> Node | None:
        live = [n for n in self.apis if n.running() and not n.killed]
        return self.chooser.choice(live) if live else None

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        if coro.__name__ in ("_outage", "_venue", "_late_crash"):
            self.outages.add(task)
            task.add_done_callback(self.outages.discard)

    async def _supervise(self) -> None:
        """Restart a process that exited by itself (not one a fault killed)."""
        while True:
            for node in self.nodes:
                if not node.killed and not node.running():
                    node.unexpected_exits += 1
                    node.start()
            await asyncio.sleep(0.5)

    # Faults -------------------------------------------------------------------------

    def inject(self, rng: random.Random) -> Fault:
        """Draw a fault from `rng` and start it (it heals itself after its duration).

        Every draw is made whatever the deployment's state, so a seed always yields the
        same schedule; a fault whose target is already under another one is skipped.
        """
        kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
        down_s = round(rng.uniform(0.5, 5.0), 2)
        pick = rng.random()
        venue = rng.choice(["raydium", "meteora", "all"])
        venue_kind = rng.choice(VENUE_KINDS)
        count = rng.randint(1, 6)
        bps = rng.choice([-150, -60, 60, 150])
        # `late`: lands this many slots after it was sent, inside its validity.
        late_slots = rng.randint(4, BLOCKHASH_SLOTS - 8)
        crash_after_s = round(rng.uniform(0.3, 2.0), 2)
        if kind in ("kill_api", "kill_worker", "late_crash"):
            group = self.apis if kind == "kill_api" else self.workers
            target = group[int(pick * len(group))].name
        elif kind == "kill_chain":
            target = self.chain.name
        elif kind == "venue":
            target = f"venue:{venue}:{venue_kind}"
        else:
            target = kind.split("_")[0]  # one fault per backend at a time
        fault = Fault(kind, f"{target} for {down_s}s", now())
        self.faults.append(fault)
        if target in self.busy:
            fault.skipped = f"{target} already under a fault"
            return fault
        self.busy.add(target)
        if kind == "venue":
            body: dict[str, Any] = {"venue": venue, "kind": venue_kind, "count": count}
            if venue_kind == "price":
                body["bps"] = bps
            if venue_kind == "late":
                body["slots"] = late_slots
            fault.detail = jsoncodec.dumps(body).decode()
            self._spawn(self._venue(fault, target, body))
        elif kind == "late_crash":
            body = {"venue": "all", "kind": "late", "count": count + 2, "slots": late_slots}
            fault.detail = f"{target} {crash_after_s}s after {jsoncodec.dumps(body).decode()}"
            fault.detail += f" for {down_s}s"
            self._spawn(self._late_crash(fault, target, body, crash_after_s, down_s))
        else:
            self._spawn(self._outage(fault, target, down_s))
        return fault

    async def _outage(self, fault: Fault, target: str, down_s: float) -> None:
        try:
            if fault.kind.startswith("kill"):
                node = next(n for n in self.nodes if n.name == target)
                await node.kill()
                await asyncio.sleep(down_s)
                node.start()
            elif fault.kind == "redis_restart":
                assert self.redis is not None
                await self.redis.kill()
                await asyncio.sleep(down_s)
                await self.redis.start()
            elif fault.kind == "redis_cut":
                assert self.redis_proxy is not None
                await self.redis_proxy.down()
                await asyncio.sleep(down_s)
                await self.redis_proxy.up()
            elif fault.kind == "pg_cut":
                assert self.pg_proxy is not None
                await self.pg_proxy.down()
                await asyncio.sleep(down_s)
                await self.pg_proxy.up()
            elif fault.kind == "pg_restart":
                mode = "immediate" if down_s > 2.5 else "fast"
                fault.detail += f" ({mode})"
                await self.pg.stop(mode)
                await asyncio.sleep(down_s)
                await self.pg.start()
            fault.healed = now()
        finally:
            self.busy.discard(target)

    async def _arm(self, fault: Fault, body: dict[str, Any]) -> bool:
        """Arm a venue fault through a live API (it needs Redis); a refusal is recorded
        as the reason the fault was skipped."""
        api = self.live_api()
        if api is None:
            fault.skipped = "no API up"
            return False
        try:
            response = await self.http.post(f"{api.url}/api/mock/faults", json=body)
        except httpx.TransportError as err:
            fault.skipped = type(err).__name__
            return False
        if response.status_code != 201:
            fault.skipped = f"answered {response.status_code}"
            return False
        return True

    async def _late_crash(
        self, fault: Fault, target: str, body: dict[str, Any], after_s: float, down_s: float
    ) -> None:
        """Arm late landings, let transactions go out under them, then kill a worker for
        `down_s`: the orders it was confirming are resumed elsewhere mid-flight."""
        try:
            if not await self._arm(fault, body):
                return
            await asyncio.sleep(after_s)
            node = next(n for n in self.nodes if n.name == target)
            await node.kill()
            await asyncio.sleep(down_s)
            node.start()
            fault.healed = now()
        finally:
            self.busy.discard(target)

    async def _venue(self, fault: Fault, target: str, body: dict[str, Any]) -> None:
        try:
            if await self._arm(fault, body):
                fault.healed = fault.started  # armed; it wears off by itself
        finally:
            self.busy.discard(target)

    # Healing ------------------------------------------------------------------------

    async def heal(self, timeout: float = 90) -> None:
        """Wait for the faults under way to heal themselves, then check that all is up."""
        async with asyncio.timeout(timeout):
            await asyncio.gather(*self.outages, return_exceptions=True)
            assert self.redis is not None and self.pg_proxy and self.redis_proxy
            if not await self.redis.answers():
                await self.redis.start()
            if not (self.pg.data / "postmaster.pid").exists():
                await self.pg.start()
            for node in self.nodes:
                if not node.running():
                    node.start()
            await asyncio.gather(*(n.process.wait_ready(60) for n in (self.chain, *self.apis)))

    async def call(
        self, method: str, path: str, ok: tuple[int, ...] = (), **kwargs: Any
    ) -> httpx.Response:
        """A call the run cannot do without: retried on any live API until it answers
        2xx (or a status in `ok`)."""
        async with asyncio.timeout(60):
            while True:
                api = self.live_api()
                if api is not None:
                    try:
                        response = await self.http.request(method, api.url + path, **kwargs)
                        if response.is_success or response.status_code in ok:
                            return response
                    except httpx.TransportError:
                        pass
                await asyncio.sleep(0.3)

    async def stop(self) -> None:
        """Stop everything the run started, whatever state it is in."""
        try:
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            for node in self.nodes:
                node.killed = True
                if node.running():
                    await node.process.terminate(10)
            await self.http.aclose()
            for proxy in (self.pg_proxy, self.redis_proxy):
                if proxy is not None:
                    await proxy.down()
            if self.redis is not None:
                await self._keep_redis_slowlog()
                await self.redis.stop()
        finally:
            if self.pg.log_path.exists():
                shutil.copy(self.pg.log_path, self.out / "postgres.log")
            await self.pg.remove()

    async def _keep_redis_slowlog(self) -> None:
        """Redis's slow log tells whether a stall was Redis itself being busy."""
        assert self.redis is not None
        client = Redis.from_url(self.redis.url)
        try:
            entries = await client.slowlog_get(50)
            (self.out / "redis-slowlog.json").write_text(json.dumps(entries, default=str))
        except RedisError:
            pass  # it is down: nothing to keep
        finally:
            await client.aclose()
