"""The chaos run's summary: faults, orders, answers, recovery times, invariants."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from typing import Any

from rich.console import Console
from rich.table import Table

from tests.chaos.checks import Invariant, Snapshot
from tests.chaos.cluster import Cluster, Fault
from tests.chaos.load import Load

EXAMPLES = 5  # counter-examples printed per failed invariant (all are in report.json)


def _seconds(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.1f} / {max(values):.1f}"


def print_report(
    console: Console,
    seed: int,
    minutes: float,
    cluster: Cluster,
    load: Load,
    snap: Snapshot,
    invariants: list[Invariant],
    recoveries: list[tuple[Fault, float | None, float | None]],
    settled_s: float,
) -> None:
    console.rule(f"chaos run, seed {seed}, {minutes} min")
    for at, text in cluster.milestones:
        console.print(f"  {at:%H:%M:%S.%f}"[:-3], text, highlight=False)
    if cluster.stalls:
        console.print("[yellow]the harness's own event loop stalled (its proxies too):[/]",
                      [(f"{at:%H:%M:%S}", round(s, 1)) for at, s in cluster.stalls])  # fmt: skip
    if cluster.faults:
        console.print("fault schedule:")
        for f in cluster.faults:
            took = f" healed +{(f.healed - f.started).total_seconds():.1f}s" if f.healed else ""
            skipped = f" [dim]skipped: {f.skipped}[/]" if f.skipped else ""
            when = f"{f.started:%H:%M:%S.%f}"[:-3]
            console.print(f"  {when} {f.kind:<13} {f.detail}{took}{skipped}", highlight=False)

    faults = Table(title="Faults injected")
    for column in ("kind", "injected", "skipped", "outage s (median / max)"):
        faults.add_column(column)
    by_kind: dict[str, list[Fault]] = defaultdict(list)
    for f in cluster.faults:
        by_kind[f.kind].append(f)
    for kind, items in sorted(by_kind.items()):
        done = [f for f in items if f.skipped is None]
        outages = [(f.healed - f.started).total_seconds() for f in done if f.healed]
        faults.add_row(kind, str(len(done)), str(len(items) - len(done)), _seconds(outages))
    console.print(faults)

    orders = Table(title=f"Orders by type and outcome (settled {settled_s:.1f}s after healing)")
    statuses = sorted({o["status"] for o in snap.orders.values()})
    orders.add_column("type")
    for status in statuses:
        orders.add_column(status)
    orders.add_column("total")
    counts: Counter[tuple[str, str]] = Counter(
        (o["type"], o["status"]) for o in snap.orders.values()
    )
    for kind in sorted({o["type"] for o in snap.orders.values()}):
        row = [str(counts[(kind, s)]) for s in statuses]
        orders.add_row(kind, *row, str(sum(counts[(kind, s)] for s in statuses)))
    console.print(orders)
    reasons = Counter(o["fail_reason"] for o in snap.orders.values() if o["fail_reason"])
    console.print("fail reasons:", dict(reasons.most_common()))

    answers = Table(title="HTTP answers to the load")
    for column in ("request", "answer", "count"):
        answers.add_column(column)
    for (kind, outcome), n in sorted(load.answers.items()):
        answers.add_row(kind, outcome, str(n))
    console.print(answers)
    if load.refused:
        console.print("valid requests refused (4xx):", dict(load.refused))

    rec = Table(title="Recovery after a fault healed, s (median / max)")
    for column in ("kind", "faults", "engine moves again", "every in-flight order moved",
                   "in-flight never moved"):  # fmt: skip
        rec.add_column(column)
    grouped: dict[str, list[tuple[float | None, float | None]]] = defaultdict(list)
    for fault, first, every in recoveries:
        grouped[fault.kind].append((first, every))
    for kind, values in sorted(grouped.items()):
        firsts = [a for a, _ in values if a is not None]
        everys = [b for _, b in values if b is not None]
        never = sum(1 for _, b in values if b is None)
        rec.add_row(kind, str(len(values)), _seconds(firsts), _seconds(everys), str(never))
    console.print(rec)

    procs = Table(title="Processes")
    for column in ("process", "starts", "exited by itself", "error log lines"):
        procs.add_column(column)
    for node in cluster.nodes:
        errors = 0
        for log in cluster.out.glob(f"{node.name}.*.log"):
            errors += sum(1 for line in log.open(errors="replace") if '"level": "error"' in line)
        procs.add_row(node.name, str(node.incarnation), str(node.unexpected_exits), str(errors))
    console.print(procs)

    table = Table(title="Invariants")
    for column in ("invariant", "checked", "result", "note"):
        table.add_column(column)
    for inv in invariants:
        result = "[green]ok[/]" if inv.passed else f"[red]FAILED ({len(inv.failures)})[/]"
        table.add_row(inv.name, str(inv.checked), result, inv.note)
    console.print(table)
    for inv in invariants:
        if inv.passed:
            continue
        console.print(f"[red]{inv.name}[/]: {len(inv.failures)} counter-examples, first ones:")
        for failure in inv.failures[:EXAMPLES]:
            console.print("  ", _flat(failure))
    console.print(f"seed {seed}; details in {cluster.out}/report.json and the process logs there")


def _flat(failure: dict[str, Any]) -> str:
    return "  ".join(f"{k}={v}" for k, v in failure.items())
