"""`python -m tests.chaos [--minutes M] [--seed S]`: one chaos run; exit 1 if an invariant fails.

CHAOS_MINUTES and CHAOS_SEED are read when the options are not given. The seed is
printed first and last: passing it again replays the same schedule of faults and load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
from rich.console import Console

from dexecutor import jsoncodec
from tests.chaos.checks import USER_CATCH_UP, Snapshot, check_all, recovery
from tests.chaos.cluster import Cluster
from tests.chaos.load import LIMIT_TOKENS, SNIPER_TOKENS, Load
from tests.chaos.report import print_report
from tests.support import OUTPUT

SETTLE_S = 120  # how long healed orders get to finish before the checks
QUIET_S = 60  # how long in-flight orders get to finish after healing, with no new work
WATCH_S = 30  # then how long watchers get to see their orders' last event
LIMIT_MARGIN = Decimal("1.002")  # how far above its limit a quote must be to "meet" it
FIRE_WITHIN_S = 3.0  # how soon a met limit must fire (15 trigger ticks)


async def campaign(seed: int, minutes: float, console: Console) -> bool:
    out = OUTPUT / f"chaos-{seed}"
    shutil.rmtree(out, ignore_errors=True)  # a replay's logs must not mix with the last run's
    cluster = Cluster(out, seed)
    fault_rng = random.Random(seed)
    load = Load(cluster, random.Random(seed + 1))
    duration = minutes * 60
    try:
        console.print(f"[bold]chaos[/] seed={seed} minutes={minutes} output={out}")
        await cluster.start()
        transitions = (await cluster.call("GET", "/api/state-machine")).json()["transitions"]
        started = time.monotonic()
        stop_at = started + duration
        launches = [(started + duration * 0.35, "NOVA", "raydium"),
                    (started + duration * 0.7, "WARP", "meteora")]  # fmt: skip
        faults = asyncio.create_task(_inject(cluster, fault_rng, stop_at))
        await load.run(stop_at, launches)
        await faults
        cluster.milestone(f"load done, {len(load.accepted)} orders accepted; healing")
        await cluster.heal()
        healed_at = time.monotonic()
        cluster.milestone("healed; waiting for in-flight orders, with no new work")
        quiet = await _settle(cluster, QUIET_S, lambda o: o["status"] != "waiting")
        cluster.milestone(f"{len(quiet.unfinished())} unfinished; finale: faults cleared, "
                          "tokens launched, prices up")  # fmt: skip
        await _finale(cluster, load)
        snap = await _settle(cluster, SETTLE_S, lambda o: True)
        snapped = time.monotonic()
        settled_s = time.monotonic() - healed_at
        cluster.milestone(f"settled after {settled_s:.1f}s, {len(snap.unfinished())} unfinished")
        terminal = {i for i, o in snap.orders.items() if o["status"] in ("confirmed", "failed",
                    "cancelled", "expired")}  # fmt: skip
        # The last events may have reached a user stream only through the hub's re-read:
        # the streams stay connected long enough for it (see `USER_CATCH_UP`).
        await asyncio.sleep(max(0.0, USER_CATCH_UP.total_seconds() - (time.monotonic() - snapped)))
        await load.stop_watchers(terminal, WATCH_S)
        met = await _met_limits(cluster, snap)
        invariants = check_all(snap, load, cluster.faults, transitions, met, quiet)
        recoveries = recovery(snap, cluster.faults)
        print_report(console, seed, minutes, cluster, load, snap, invariants, recoveries, settled_s)
        _write(out / "report.json", seed, minutes, cluster, load, invariants, recoveries)
        snap.dump(out / "database.json")
        return all(inv.passed for inv in invariants)
    finally:
        await cluster.stop()


async def _inject(cluster: Cluster, rng: random.Random, stop_at: float) -> None:
    await asyncio.sleep(rng.uniform(2, 4))  # let the load begin on a healthy deployment
    while time.monotonic() < stop_at - 2:
        cluster.inject(rng)
        await asyncio.sleep(rng.uniform(1.5, 5))


async def _finale(cluster: Cluster, load: Load) -> None:
    """Clear venue faults, launch every sniper target and move every limit's token up
    30 %: from here every waiting order's trigger has fired, unless it is stranded."""
    await cluster.call("DELETE", "/api/mock/faults")
    for token in SNIPER_TOKENS:
        await load.launch(token, "raydium")
    for token in LIMIT_TOKENS:
        body = {"venue": "all", "token": token, "bps": 3000}
        await cluster.call("POST", "/api/mock/price", json=body)


async def _settle(
    cluster: Cluster, timeout: float, counts: Callable[[asyncpg.Record], bool]
) -> Snapshot:
    """Poll PostgreSQL until every order that `counts` is terminal, or `timeout` passed."""
    deadline = time.monotonic() + timeout
    while True:
        snap = await Snapshot.take(cluster.dsn)
        left = [i for i in snap.unfinished() if counts(snap.orders[i])]
        if not left or time.monotonic() > deadline:
            return snap
        await asyncio.sleep(0.5)


async def _met_limits(cluster: Cluster, snap: Snapshot) -> dict[str, Decimal]:
    """Waiting limit orders whose limit the market meets now and that still wait a few
    trigger ticks later. Every process reads the one chain's market, so its quote is the
    truth; the 0.2 % margin only covers a price walk between the quote and the trigger's
    own read of it."""
    quoted: dict[str, Decimal] = {}
    for order_id in snap.unfinished():
        o = snap.orders[order_id]
        if o["status"] != "waiting" or o["type"] != "limit":
            continue
        params = {"tokenIn": o["token_in"], "tokenOut": o["token_out"],
                  "amountIn": str(o["amount_in"])}  # fmt: skip
        response = await cluster.call("GET", "/api/quote", params=params, ok=(200, 422))
        if response.status_code != 200:
            continue  # no venue quotes it at all: nothing can meet the limit
        price = Decimal(str(jsoncodec.loads(response.content)["route"]["price"]))
        if price >= o["limit_price"] * LIMIT_MARGIN:
            quoted[order_id] = price
    if not quoted:
        return {}
    # A limit met just now fires on the trigger's next tick (TRIGGER_INTERVAL_MS=200).
    deadline = time.monotonic() + FIRE_WITHIN_S
    while True:
        after = await Snapshot.take(cluster.dsn)
        still = {i: p for i, p in quoted.items() if after.orders[i]["status"] == "waiting"}
        if not still or time.monotonic() > deadline:
            return still
        await asyncio.sleep(0.2)


def _write(path: Path, seed: int, minutes: float, cluster: Cluster, load: Load,
           invariants: Any, recoveries: Any) -> None:  # fmt: skip
    report = {
        "seed": seed,
        "minutes": minutes,
        "faults": [vars(f) for f in cluster.faults],
        "answers": {f"{k[0]} {k[1]}": n for k, n in load.answers.items()},
        "invariants": [
            {"name": i.name, "checked": i.checked, "failures": i.failures} for i in invariants
        ],
        "recovery": [
            {"kind": f.kind, "healed": f.healed, "first_s": a, "all_s": b} for f, a, b in recoveries
        ],
        "unexpected_exits": {n.name: n.unexpected_exits for n in cluster.nodes},
    }
    path.write_text(json.dumps(report, indent=1, default=str))


async def _stoppable(run: Coroutine[Any, Any, bool]) -> bool:
    """Run the campaign so that SIGTERM (a CI timeout) still stops what it started."""
    task = asyncio.create_task(run)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await task


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    minutes = float(os.environ.get("CHAOS_MINUTES") or 3)
    parser.add_argument("--minutes", type=float, default=minutes)
    parser.add_argument("--seed", type=int, default=int(os.environ.get("CHAOS_SEED") or 0) or None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 1_000_000)
    console = Console(width=140)
    console.print(f"[bold]CHAOS_SEED={seed}[/]")
    ok = asyncio.run(_stoppable(campaign(seed, args.minutes, console)))
    verdict = "[green]PASSED[/]" if ok else "[red]FAILED[/]"
    replay = f"make chaos CHAOS_SEED={seed} CHAOS_MINUTES={args.minutes}"
    console.print(f"chaos {verdict}: replay with  {replay}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
