"""Terminal views for the CLI: an order's lifecycle live, its record, order history,
quotes (rich)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from dexecutor.client import TERMINAL, DexecutorClient, OrderEvent, OrderRecord

STATUS_STYLE = {
    "pending": "grey70",
    "waiting": "yellow",
    "routing": "cyan",
    "building": "blue",
    "submitted": "magenta",
    "retrying": "dark_orange",
    "confirmed": "bold green",
    "failed": "bold red",
    "cancelled": "grey50",
    "expired": "grey50",
}


def num(value: Any) -> str:
    """Decimals as plain digits (0.00000001, not 1E-8)."""
    return format(value, "f") if isinstance(value, Decimal) else str(value)


def pct(fraction: Any) -> str:
    """A fraction (0.0012) as the percentage people read (0.12%)."""
    try:
        return f"{Decimal(str(fraction)) * 100:.4f}".rstrip("0").rstrip(".") + "%"
    except ArithmeticError:
        return str(fraction)


def _network_fee(fill: Mapping[str, Any]) -> str | None:
    """`0.000005 SOL (base 0.000005 + priority 0 + rent 0)`, from what the fill carries."""
    total = fill.get("networkFee")
    if total is None:
        return None
    detail = fill.get("networkFeeDetail")
    parts = [f"{name} {num(detail[name])}" for name in ("base", "priority", "rent")
             if isinstance(detail, Mapping) and detail.get(name) is not None]  # fmt: skip
    return f"{num(total)} SOL" + (f" ({' + '.join(parts)})" if parts else "")


def _venue_fee(fill: Mapping[str, Any]) -> str | None:
    fee = fill.get("venueFee")
    if not isinstance(fee, Mapping) or fee.get("amount") is None:
        return None
    return f"{num(fee['amount'])} {fee.get('token', '')}".rstrip()


def fee_lines(fill: Mapping[str, Any]) -> list[str]:
    """What a fill cost: the venue's side (fee, price impact, effective price) on one
    line, the network fee and its parts on the next. Fields a server does not send are
    left out, so older servers still show."""
    venue = []
    if (fee := _venue_fee(fill)) is not None:
        venue.append(f"venue fee {fee}")
    if fill.get("priceImpact") is not None:
        venue.append(f"impact {pct(fill['priceImpact'])}")
    if fill.get("effectivePrice") is not None:
        venue.append(f"effective price {num(fill['effectivePrice'])}")
    network = _network_fee(fill)
    return [line for line in (" · ".join(venue), network and f"network fee {network}") if line]


def _transaction(event: Mapping[str, Any]) -> str:
    """The signature in full (what an explorer looks up), then where it stands."""
    parts = [f"tx {event['txHash']}"] if event.get("txHash") else []
    if event.get("slot") is not None:
        level = [event["commitment"]] if event.get("commitment") else []
        if event.get("finalizedAtSlot") is not None and event.get("commitment") != "finalized":
            level.append(f"final by slot {event['finalizedAtSlot']}")
        parts.append(f"slot {event['slot']}" + (f" ({', '.join(level)})" if level else ""))
    if event.get("lastValidBlockHeight") is not None:
        parts.append(f"valid to block {event['lastValidBlockHeight']}")
    if event.get("computeUnitPrice") is not None:
        parts.append(f"priority {event['computeUnitPrice']} µlamports/CU")
    return " · ".join(parts)


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def _details(event: OrderEvent) -> str:
    status = event.get("status")
    if status == "pending":
        return f"{event.get('amountIn')} {event.get('tokenIn')} → {event.get('tokenOut')}"
    if status == "building":
        quotes = event.get("quotes", {})
        parts = [
            f"{venue} {q['amountOut']}" if "amountOut" in q else f"{venue} {q.get('error')}"
            for venue, q in quotes.items()
        ]
        return (
            f"route {event.get('dex')} · "
            + ", ".join(parts)
            + f" · min {event.get('minAmountOut')}"
        )
    if status == "submitted":
        sent = _transaction(event).replace(" · ", "\n", 1)  # the signature on a line of its own
        return f"{event.get('dex')} {sent}"
    if status == "confirmed":
        fill = f"{event.get('amountOut')} at {event.get('executedPrice')} on {event.get('dex')}"
        return "\n".join(filter(None, (fill, _transaction(event), *fee_lines(event))))
    if status in ("retrying", "failed"):
        extra = f" · next attempt in {event.get('delayMs')} ms" if status == "retrying" else ""
        # A transaction that landed and reverted: its signature, slot and the fee it paid.
        landed = " · ".join(filter(None, (_transaction(event), *fee_lines(event))))
        why = f"{event.get('reason')}: {event.get('message')}{extra}"
        return f"{why}\n{landed}" if landed else why
    if status == "waiting":
        return str(event.get("trigger", {}).get("description", ""))
    return str(event.get("reason", ""))


def lifecycle_table(order_id: str, events: Sequence[OrderEvent]) -> Table:
    table = Table(title=f"order {order_id}", title_justify="left", expand=False)
    table.add_column("#", justify="right")
    table.add_column("status")
    table.add_column("attempt", justify="right")
    table.add_column("at")
    table.add_column("details")
    for e in events:
        at = str(e.get("at", ""))
        table.add_row(str(e.get("seq")), status_text(str(e.get("status"))),
                      str(e.get("attempt")), at[11:23], _details(e))  # fmt: skip
    return table


async def watch_order(client: DexecutorClient, order_id: str, console: Console) -> str:
    """Show the order's events live; return its final status.

    Nothing is drawn before the first event, so a stream that cannot open leaves the
    terminal with the error line alone.
    """
    stream = client.watch(order_id)
    first = await anext(stream, None)
    if first is None:
        return "unknown"
    events: list[OrderEvent] = [first]
    with Live(lifecycle_table(order_id, events), console=console, refresh_per_second=8) as live:
        async for event in stream:
            events.append(event)
            live.update(lifecycle_table(order_id, events))
    return str(events[-1]["status"]) if events else "unknown"


# The record's fields in reading order: what was asked, then what happened.
_RECORD_FIELDS = (
    "orderId", "userId", "type", "status", "tokenIn", "tokenOut", "amountIn", "slippageBps",
    "limitPrice", "expiresAt", "dexUsed", "route", "expectedAmountOut", "minAmountOut",
    "amountOut", "executedPrice", "effectivePrice", "priceImpact", "venueFee", "networkFee",
    "txHash", "slot", "commitment", "finalizedAtSlot", "failReason", "attempts", "createdAt",
    "updatedAt",
)  # fmt: skip


def record_table(record: OrderRecord) -> Table:
    """One order's record, field by field (the fill once it is confirmed)."""
    fields: dict[str, Any] = dict(record)
    table = Table(title=f"order {record.get('orderId')}", title_justify="left", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    shown = [name for name in _RECORD_FIELDS if fields.get(name) is not None]
    shown += [
        n for n in fields if n not in _RECORD_FIELDS and n != "quotes" and fields[n] is not None
    ]
    for name in shown:
        value = fields[name]
        if name == "status":
            table.add_row(name, status_text(str(value)))
        elif name == "networkFee":
            table.add_row(name, _network_fee(fields) or "")
        elif name == "venueFee":
            table.add_row(name, _venue_fee(fields) or "")
        elif name == "priceImpact":
            table.add_row(name, pct(value))
        elif name == "routePlan":
            for leg in value:
                table.add_row(f"leg {leg['percent']}%", leg_text(leg))
        elif name == "bestSingle":
            table.add_row(name, leg_text(value))
        elif name == "executionQuality":
            for key, figure in value.items():
                if figure is not None:
                    table.add_row(key, num(figure))
        elif isinstance(value, list):
            table.add_row(name, " → ".join(map(str, value)))
        elif not isinstance(value, dict):
            table.add_row(name, num(value))
    return table


def leg_text(leg: dict[str, Any]) -> str:
    """A route leg in one line: venue, path, amounts."""
    return (
        f"{leg['venue']}: {' → '.join(leg['path'])}  {num(leg['amountIn'])} → "
        f"{num(leg['amountOut'])} (fee {num(leg['fee'])}, impact {num(leg['priceImpact'])})"
    )


def orders_table(orders: Sequence[OrderRecord], wide: bool = False) -> Table:
    table = Table(title="orders (newest first)", title_justify="left")
    for column in (
        "created",
        "order",
        "type",
        "pair",
        "amountIn",
        "status",
        "dex",
        "amountOut",
        "reason",
    ):
        table.add_column(column)
    for o in orders:
        table.add_row(
            str(o.get("createdAt", ""))[:19].replace("T", " "),
            str(o.get("orderId", "")) if wide else str(o.get("orderId", ""))[:8],
            str(o.get("type")),
            f"{o.get('tokenIn')}→{o.get('tokenOut')}",
            str(o.get("amountIn")),
            status_text(str(o.get("status"))),
            str(o.get("dexUsed") or ""),
            str(o.get("amountOut") or ""),
            str(o.get("failReason") or ""),
        )
    return table


def quote_table(quote: dict[str, Any]) -> Table:
    best = quote["route"]["dex"]
    table = Table(
        title=(
            f"{quote['amountIn']} {quote['tokenIn']} → {quote['tokenOut']}"
            f"  (quoteId {quote['quoteId']})"
        ),
        title_justify="left",
    )
    for column in ("venue", "amountOut", "price", "fee", "impact", "route"):
        table.add_column(column)
    for venue, q in quote["quotes"].items():
        mark = " ★" if venue == best else ""
        if "error" in q:
            table.add_row(venue, Text(q["error"], style="red"), "", "", "", "")
            continue
        table.add_row(venue + mark, num(q["amountOut"]), num(q["price"]), num(q["fee"]),
                      num(q["priceImpact"]), " → ".join(q["route"]))  # fmt: skip
    for leg in quote.get("routePlan") or []:
        path = f"{leg['venue']}: {' → '.join(leg['path'])}"
        table.add_row(f"  leg {leg['percent']}%", num(leg["amountOut"]), "", num(leg["fee"]),
                      num(leg["priceImpact"]), path)  # fmt: skip
    bounds = f"minAmountOut {quote['minAmountOut']} at {quote['slippageBps']} bps"
    if quote.get("maxAmountIn") is not None:
        bounds = f"spend {quote['amountIn']} (at most {quote['maxAmountIn']}); {bounds}"
    gain = quote.get("splitGainBps")
    split = f"; split beats the best single venue by {gain} bps" if gain else ""
    table.caption = f"{bounds}{split}; expires {quote['expiresAt']}"
    return table


def balances_table(wallet: dict[str, Any]) -> Table:
    table = Table(title=f"{wallet['userId']}  wallet {wallet['wallet']}", title_justify="left")
    for column in ("token", "total", "available", "reserved"):
        table.add_column(column, justify="left" if column == "token" else "right")
    for symbol, b in wallet["balances"].items():
        reserved = num(b["reserved"]) if b["reserved"] else Text("0", style="dim")
        table.add_row(symbol, num(b["total"]), num(b["available"]), reserved)
    return table


__all__ = [
    "TERMINAL",
    "balances_table",
    "fee_lines",
    "lifecycle_table",
    "orders_table",
    "quote_table",
    "record_table",
    "watch_order",
]
