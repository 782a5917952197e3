"""What must hold after the chaos, read from PostgreSQL (the truth) and the clients' notes.

Each invariant collects its counter-examples with enough to start debugging: the
order id, its type and status, its event history and its ledger rows.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any

import asyncpg

from tests.chaos.cluster import CAP, CAP_WINDOW_S, Fault
from tests.chaos.load import Load
from tests.support import unrecorded_txs

TERMINAL = {"confirmed", "failed", "cancelled", "expired"}
EXECUTING = {"routing", "building", "submitted"}
MOVING = EXECUTING | {"retrying"}
EXPIRY_GRACE = timedelta(seconds=1)
STALL_BOUND_S = 30.0  # a fire decided just before expiry may land just after
USER_CATCH_UP = timedelta(seconds=5)  # the hub's re-read (2 s) and one pass of it, with room


@dataclass
class Snapshot:
    orders: dict[str, asyncpg.Record]
    events: dict[str, list[asyncpg.Record]]
    ledger: dict[str, list[asyncpg.Record]]  # the chain's transactions, per order
    unrecorded: list[asyncpg.Record]  # transactions the engine had not recorded first
    taken_at: datetime

    @classmethod
    async def take(cls, dsn: str) -> Snapshot:
        conn = await asyncpg.connect(dsn)
        try:
            taken_at = await conn.fetchval("SELECT now()")
            orders = await conn.fetch("SELECT *, id::text AS oid FROM orders")
            events = await conn.fetch(
                "SELECT order_id::text AS oid, seq, status, at, data::text AS data"
                " FROM order_events ORDER BY order_id, seq"
            )
            ledger = await conn.fetch(
                "SELECT order_id::text AS oid, signature, venue, attempt, status, reason,"
                " amount_out, received_at, finalized_at, received_slot, last_valid, slot,"
                " fault FROM chain_txs ORDER BY received_at, received_slot"
            )
            unrecorded = await unrecorded_txs(conn)
        finally:
            await conn.close()
        by_order: dict[str, list[asyncpg.Record]] = defaultdict(list)
        for e in events:
            by_order[e["oid"]].append(e)
        txs: dict[str, list[asyncpg.Record]] = defaultdict(list)
        for tx in ledger:
            txs[tx["oid"]].append(tx)
        return cls({o["oid"]: o for o in orders}, by_order, txs, unrecorded, taken_at)

    def dump(self, path: Path) -> None:
        """The orders, events and ledger as the checks saw them, to debug a failed run."""
        tables = {
            "orders": list(self.orders.values()),
            "events": [e for events in self.events.values() for e in events],
            "ledger": [t for txs in self.ledger.values() for t in txs],
            "unrecorded": self.unrecorded,
        }
        rows = {name: [dict(r) for r in records] for name, records in tables.items()}
        path.write_text(json.dumps(rows, default=str))

    def unfinished(self) -> list[str]:
        return [i for i, o in self.orders.items() if o["status"] not in TERMINAL]

    def describe(self, order_id: str, why: str) -> dict[str, Any]:
        order = self.orders.get(order_id)
        return {
            "order": order_id,
            "why": why,
            "type": order["type"] if order else None,
            "status": order["status"] if order else None,
            "events": [
                f"{e['seq']}:{e['status']}@{e['at'].strftime('%H:%M:%S.%f')[:-3]}"
                for e in self.events.get(order_id, [])
            ],
            "ledger": [
                f"{t['venue']}/{t['attempt']}:{t['status']}"
                f" sent@{t['received_slot']} valid<={t['last_valid']} slot={t['slot']}"
                + (f" {t['fault']}" if t["fault"] else "")
                for t in self.ledger.get(order_id, [])
            ],
        }


@dataclass
class Invariant:
    name: str
    failures: list[dict[str, Any]] = field(default_factory=list)
    checked: int = 0
    note: str = ""

    @property
    def passed(self) -> bool:
        return not self.failures


def check_all(
    snap: Snapshot,
    load: Load,
    faults: list[Fault],
    transitions: dict[str, list[str]],
    met_limits: dict[str, Decimal],
    quiet: Snapshot,
) -> list[Invariant]:
    """Every invariant of the run. `met_limits`: waiting limit orders whose price is met;
    `quiet`: the database once in-flight orders had a while to finish, before the finale."""
    return [
        _accepted_stored(snap, load),
        _recovered_unprompted(quiet),
        _finished_or_can_fire(snap, load, met_limits),
        _exactly_one_swap(snap),
        _resigned_only_when_dead(snap),
        _recorded_first(snap),
        _events_whole(snap, transitions),
        _waiting_first(snap),
        _expiry_respected(snap, faults),
        _limit_respected(snap),
        _cancels_stick(snap, load),
        _idempotency(snap, load),
        _order_watchers(snap, load),
        _user_streams(snap, load, faults),
        _user_streams_ordered(snap, load),
        _cap(snap, faults),
        _no_long_stall(snap, faults),
        _answers(load),
    ]


def _accepted_stored(snap: Snapshot, load: Load) -> Invariant:
    inv = Invariant("every 202 is a stored order", checked=len(load.accepted))
    for order_id in load.accepted:
        if order_id not in snap.orders:
            inv.failures.append({"order": order_id, "why": "answered 202, not in PostgreSQL"})
    return inv


def _finished_or_can_fire(snap: Snapshot, load: Load, met: dict[str, Decimal]) -> Invariant:
    inv = Invariant("every order terminal, or waiting on a live trigger", checked=len(snap.orders))
    for order_id, o in snap.orders.items():
        status = o["status"]
        if status in TERMINAL:
            continue
        if status != "waiting":
            inv.failures.append(snap.describe(order_id, f"stuck in {status}"))
        elif o["expires_at"] is not None and o["expires_at"] < snap.taken_at - EXPIRY_GRACE:
            inv.failures.append(snap.describe(order_id, f"waiting past expiry {o['expires_at']}"))
        elif o["type"] == "sniper" and o["token_out"] in load.launched:
            inv.failures.append(snap.describe(order_id, f"{o['token_out']} launched, never fired"))
        elif order_id in met:
            inv.failures.append(
                snap.describe(order_id, f"limit {o['limit_price']} met by quote {met[order_id]}")
            )
    return inv


def _recovered_unprompted(quiet: Snapshot) -> Invariant:
    """Once everything is healed, orders in flight finish with no new work arriving: new
    jobs must not be what wakes a stuck worker."""
    inv = Invariant("in-flight orders finish after healing, with no new work")
    for order_id, o in quiet.orders.items():
        if o["status"] == "waiting":
            continue
        inv.checked += 1
        if o["status"] not in TERMINAL:
            inv.failures.append(quiet.describe(order_id, f"still {o['status']} before the finale"))
    return inv


def _exactly_one_swap(snap: Snapshot) -> Invariant:
    """No order ever executes two swaps: a reverted transaction paid a fee and moved
    nothing, a dropped or expired one never ran; only `landed` is a swap."""
    inv = Invariant(
        "never two landed swaps; confirmed: one, its venue and signature; others none",
        checked=len(snap.orders),
    )
    for order_id in snap.ledger.keys() - snap.orders.keys():
        inv.failures.append(snap.describe(order_id, "chain transactions of no stored order"))
    for order_id, o in snap.orders.items():
        landed = [t for t in snap.ledger.get(order_id, []) if t["status"] == "landed"]
        if o["status"] == "confirmed":
            if len(landed) != 1:
                inv.failures.append(snap.describe(order_id, f"{len(landed)} landed swaps"))
            elif (landed[0]["venue"], landed[0]["signature"]) != (o["dex_used"], o["tx_hash"]):
                inv.failures.append(
                    snap.describe(order_id, f"dexUsed/txHash {o['dex_used']} {o['tx_hash']}"
                                  " disagree with the chain")
                )  # fmt: skip
        elif landed and o["status"] in TERMINAL:
            inv.failures.append(snap.describe(order_id, f"{o['status']} with a landed swap"))
        elif len(landed) > 1:
            inv.failures.append(snap.describe(order_id, f"{len(landed)} landed swaps"))
    return inv


def _resigned_only_when_dead(snap: Snapshot) -> Invariant:
    """An order's next transaction (a new signature) is sent only once the last one can
    never land: its blockhash expired (the chain's block height passed its last valid
    one) or it landed and reverted. Re-signing earlier could execute twice if the first
    one landed late. Rebroadcasts keep the signature: they are not new transactions."""
    inv = Invariant("re-signed only after the last transaction expired or reverted")
    for order_id, txs in snap.ledger.items():
        for before, after in pairwise(sorted(txs, key=lambda t: t["received_slot"])):
            inv.checked += 1
            sent = after["received_slot"]
            status = before["status"]
            if status in ("expired", "dropped"):
                dead = before["last_valid"] is None or sent > before["last_valid"]
            elif status == "reverted":  # dead once it landed and failed
                dead = before["slot"] is not None and sent >= before["slot"]
            else:  # pending, or landed: a second swap could follow
                dead = False
            if not dead:
                why = (
                    f"{after['signature'][:12]} sent at slot {sent} while"
                    f" {before['signature'][:12]} was {status} (valid to {before['last_valid']},"
                    f" slot {before['slot']})"
                )
                inv.failures.append(snap.describe(order_id, why))
    return inv


def _recorded_first(snap: Snapshot) -> Invariant:
    """The write-ahead fence: the engine records a transaction in `order_txs` before it
    sends it, so a sender that lost its order (or crashed mid-send) never swaps unseen."""
    checked = sum(len(txs) for txs in snap.ledger.values())
    inv = Invariant("every chain transaction was recorded by the engine first", checked=checked)
    for tx in snap.unrecorded:
        why = f"{tx['venue']}/{tx['attempt']} {tx['signature'][:12]} {tx['status']} unrecorded"
        inv.failures.append(snap.describe(tx["oid"], why))
    return inv


def _events_whole(snap: Snapshot, transitions: dict[str, list[str]]) -> Invariant:
    inv = Invariant("events gap-free 1..n, legal, matching the order", checked=len(snap.orders))
    for order_id, o in snap.orders.items():
        events = snap.events.get(order_id, [])
        seqs = [e["seq"] for e in events]
        statuses = [e["status"] for e in events]
        if seqs != list(range(1, len(seqs) + 1)) or o["seq"] != len(seqs):
            inv.failures.append(snap.describe(order_id, f"seqs {seqs}, order seq {o['seq']}"))
        elif statuses[0] != "pending" or statuses[-1] != o["status"]:
            inv.failures.append(snap.describe(order_id, "first event not pending or last not it"))
        else:
            for a, b in pairwise(statuses):
                if b not in transitions.get(a, []):
                    inv.failures.append(snap.describe(order_id, f"illegal {a} -> {b}"))
                    break
    return inv


def _waiting_first(snap: Snapshot) -> Invariant:
    """A limit or sniper order never runs as a market order (pending -> routing)."""
    inv = Invariant("limit/sniper: waiting before routing", checked=len(snap.orders))
    for order_id, o in snap.orders.items():
        statuses = [e["status"] for e in snap.events.get(order_id, [])]
        if o["type"] != "market" and len(statuses) > 1 and statuses[1] == "routing":
            inv.failures.append(snap.describe(order_id, "pending -> routing for a waiting type"))
    return inv


def faults_near(at: datetime, faults: list[Fault]) -> list[str]:
    """The faults under way around `at` (from 1 s before one began to 6 s after it
    healed): where to look first for a counter-example's cause."""
    return [
        f"{f.kind} {f.detail.split(' for ')[0]} @{f.started:%H:%M:%S.%f}"[:-3]
        for f in faults
        if f.skipped is None
        and f.started - timedelta(seconds=1) <= at <= (f.healed or f.started) + timedelta(seconds=6)
    ]


def _expiry_respected(snap: Snapshot, faults: list[Fault]) -> Invariant:
    inv = Invariant("nothing starts routing after its expiry", checked=len(snap.orders))
    for order_id, o in snap.orders.items():
        if o["expires_at"] is None:
            continue
        first = next((e for e in snap.events.get(order_id, []) if e["status"] == "routing"), None)
        if first is not None and first["at"] > o["expires_at"] + EXPIRY_GRACE:
            failure = snap.describe(order_id, f"routed after expiry {o['expires_at']}")
            inv.failures.append({**failure, "faults": faults_near(o["expires_at"], faults)})
    return inv


def _limit_respected(snap: Snapshot) -> Invariant:
    inv = Invariant("confirmed limit orders fill at or better than the limit")
    for order_id, o in snap.orders.items():
        if o["type"] == "limit" and o["status"] == "confirmed":
            inv.checked += 1
            if o["executed_price"] < o["limit_price"]:
                inv.failures.append(
                    snap.describe(order_id, f"filled at {o['executed_price']} < {o['limit_price']}")
                )
    return inv


def _cancels_stick(snap: Snapshot, load: Load) -> Invariant:
    inv = Invariant("a cancel answered 200 ends cancelled", checked=len(load.cancelled_ok))
    for order_id in load.cancelled_ok:
        if snap.orders[order_id]["status"] != "cancelled":
            inv.failures.append(snap.describe(order_id, "cancel answered 200"))
    return inv


def _idempotency(snap: Snapshot, load: Load) -> Invariant:
    inv = Invariant("one order per Idempotency-Key", checked=len(load.by_key))
    inv.failures.extend(load.idempotency_mismatch)
    for (user, key), ids in load.by_key.items():
        if len(ids) != 1:
            inv.failures.append({"user": user, "key": key, "orders": sorted(ids)})
    stored: dict[tuple[str, str], int] = defaultdict(int)
    for o in snap.orders.values():
        if o["idempotency_key"] is not None:
            stored[(o["user_id"], o["idempotency_key"])] += 1
    inv.failures.extend({"key": k, "stored": n} for k, n in stored.items() if n > 1)
    return inv


def _order_watchers(snap: Snapshot, load: Load) -> Invariant:
    inv = Invariant("every order watcher saw its terminal event, each event once")
    for watch in load.order_watches:
        order = snap.orders.get(watch.order_id)
        if order is None or order["status"] not in TERMINAL:
            continue
        inv.checked += 1
        if watch.gaps or watch.repeats:
            why = f"watcher gaps {watch.gaps}, seqs sent twice {watch.repeats}"
            inv.failures.append(snap.describe(watch.order_id, why))
        elif not watch.statuses or watch.statuses[-1] != order["status"]:
            seen = ",".join(watch.statuses)
            why = f"watcher saw [{seen}] ({watch.reconnects} reconnects), no terminal event"
            inv.failures.append(snap.describe(watch.order_id, why))
    return inv


def _user_streams(snap: Snapshot, load: Load, faults: list[Fault]) -> Invariant:
    """A live user stream delivers each terminal event committed while it was connected.

    An event its API process missed on Redis (its subscription was reconnecting) comes
    from the hub's re-read of PostgreSQL, every 2 s: the stream owes it only if it stayed
    connected for `USER_CATCH_UP` after the commit."""
    inv = Invariant("user streams saw every terminal event while connected")
    margin = timedelta(seconds=1)
    for watch in load.user_watches:
        for order_id, o in snap.orders.items():
            if o["user_id"] != watch.user or o["status"] not in TERMINAL:
                continue
            last = snap.events[order_id][-1]
            inside = any(
                start + margin <= last["at"] and (end is None or last["at"] <= end - USER_CATCH_UP)
                for start, end in watch.segments
            )
            if not inside:
                continue
            inv.checked += 1
            if (order_id, last["seq"]) not in watch.seen:
                failure = snap.describe(order_id, f"{watch.user}'s stream missed it")
                inv.failures.append({**failure, "faults": faults_near(last["at"], faults)})
    return inv


def _user_streams_ordered(snap: Snapshot, load: Load) -> Invariant:
    """On a user stream, each order's events arrive in their order (routing never
    before pending)."""
    inv = Invariant("user streams deliver each order's events in order")
    for watch in load.user_watches:
        inv.checked += len(watch.seen)
        for order_id, seq, after in watch.disorder:
            why = f"{watch.user}'s stream sent seq {seq} after seq {after}"
            inv.failures.append(snap.describe(order_id, why))
    return inv


def cap_levels(snap: Snapshot) -> list[tuple[datetime, int, dict[str, tuple[str, datetime]]]]:
    """After each change, the orders executing (status and since when), from stored
    event times. Leaving is counted before entering at equal times."""
    marks: list[tuple[datetime, int, str, str]] = []
    for oid, events in snap.events.items():
        was = False
        for e in events:
            executing = e["status"] in EXECUTING
            if executing != was:
                marks.append((e["at"], 1 if executing else -1, oid, e["status"]))
            elif executing:
                marks.append((e["at"], 0, oid, e["status"]))
            was = executing
    running: dict[str, tuple[str, datetime]] = {}
    levels = []
    for at, delta, oid, status in sorted(marks, key=lambda m: (m[0], m[1])):
        if delta < 0:
            running.pop(oid, None)
        else:
            running[oid] = (status, running[oid][1] if oid in running else at)
        if delta:
            levels.append((at, len(running), dict(running)))
    return levels


def _in_window(at: datetime, faults: list[Fault]) -> bool:
    window = timedelta(seconds=CAP_WINDOW_S)
    return any(
        f.backend and f.skipped is None and f.started <= at
        and (f.healed is None or at <= f.healed + window)
        for f in faults
    )  # fmt: skip


def _cap(snap: Snapshot, faults: list[Fault]) -> Invariant:
    name = f"cap {CAP} held (outside {CAP_WINDOW_S:.0f}s after a backend fault)"
    inv = Invariant(name)
    peaks = {False: 0, True: 0}
    for at, level, running in cap_levels(snap):
        inv.checked += 1
        window = _in_window(at, faults)
        peaks[window] = max(peaks[window], level)
        bound = CAP
        if level > bound and not window:
            orders = {
                oid[:8]: f"{status} since {since.strftime('%H:%M:%S.%f')[:-3]}"
                for oid, (status, since) in running.items()
            }
            inv.failures.append(
                {"at": at.isoformat(), "executing": level, "bound": bound, "orders": orders,
                 "faults": faults_near(at, faults)}
            )  # fmt: skip
    inv.note = f"peak {peaks[False]} outside windows, {peaks[True]} within"
    return inv


def _no_long_stall(snap: Snapshot, faults: list[Fault]) -> Invariant:
    """The engine is never idle for long while an order waits for it (pending, or in an
    executing or retrying status): a generous bound on every recovery."""
    inv = Invariant(f"engine never idle > {STALL_BOUND_S:.0f}s with work queued")
    moves = sorted(
        e["at"] for events in snap.events.values() for e in events
        if e["status"] not in ("pending", "waiting")
    )  # fmt: skip
    longest = timedelta(0)
    for a, b in pairwise(moves):
        inv.checked += 1
        gap = b - a
        if gap <= timedelta(seconds=1) or gap <= min(longest, timedelta(seconds=STALL_BOUND_S)):
            continue  # cannot change the answer: skip the costly look at every order
        queued = [oid for oid, events in snap.events.items() if _waits_for_engine(events, a, b)]
        if not queued:
            continue
        longest = max(longest, gap)
        if gap > timedelta(seconds=STALL_BOUND_S):
            inv.failures.append(
                {"from": a.isoformat(), "to": b.isoformat(), "orders": [q[:8] for q in queued[:8]],
                 "faults": faults_near(a, faults)}
            )  # fmt: skip
    inv.note = f"longest idle with work: {longest.total_seconds():.1f}s"
    return inv


def _waits_for_engine(events: list[asyncpg.Record], a: datetime, b: datetime) -> bool:
    """Was this order, all through (a, b), in a status only the engine moves it out of?"""
    before = [e for e in events if e["at"] <= a]
    if not before or before[-1]["status"] in TERMINAL or before[-1]["status"] == "waiting":
        return False
    return all(e["at"] >= b for e in events if e["at"] > a)


def _answers(load: Load) -> Invariant:
    inv = Invariant("no 500s; client mistakes always 4xx", checked=sum(load.answers.values()))
    inv.failures.extend(load.server_errors)
    inv.failures.extend(load.client_mistake_5xx)
    return inv


def recovery(snap: Snapshot, faults: list[Fault]) -> list[tuple[Fault, float | None, float | None]]:
    """For each healed outage: seconds until the engine moved any order again, and
    until every order that was executing when it healed had moved (None: never)."""
    progress = sorted(
        (e["at"], oid)
        for oid, events in snap.events.items()
        for e in events
        if e["status"] not in ("pending", "waiting")
    )
    out = []
    for fault in faults:
        if fault.healed is None or fault.kind == "venue" or fault.skipped:
            continue
        healed = fault.healed
        first = next((at for at, _ in progress if at > healed), None)
        in_flight = []
        for events in snap.events.values():
            before = [e for e in events if e["at"] <= healed]
            if before and before[-1]["status"] in MOVING:
                after = next((e["at"] for e in events if e["at"] > healed), None)
                in_flight.append(after)
        first_s = (first - healed).total_seconds() if first else None
        if any(a is None for a in in_flight):
            all_s = None
        else:
            all_s = max(((a - healed).total_seconds() for a in in_flight if a), default=0.0)
        out.append((fault, first_s, all_s))
    return out
