"""The live blotter at `GET /`, driven end to end in headless Chromium.

Debian's `chromium` (installed by `make test` when missing and run as root) is driven
by Playwright through `executable_path`: no browser is downloaded. The page talks to a
real `dexecutor up`; the test waits on the page's own state (`expect` auto-waiting on
`data-status` and friends), never on sleeps, and saves `test-output/blotter.png`.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dexecutor.config import parse_funding
from tests.support import OUTPUT, TEST_FUNDING, Process

pw = pytest.importorskip("playwright.async_api", reason="playwright is not installed")
axe = pytest.importorskip(
    "axe_playwright_python.async_playwright", reason="axe-playwright-python is not installed"
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LIVE = 15_000  # ms: an order's whole life at the test latencies is well under a second
BASE58 = re.compile(r"^[1-9A-HJ-NP-Za-km-z]{32,100}$")
START = {symbol: float(amount) for symbol, amount in parse_funding(TEST_FUNDING)}

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's chromium is not installed at /usr/bin/chromium "
    "(`make test` installs it when run as root: apt-get install chromium)",
)

# Records every status each order row shows, so the test can see rows move live.
ROW_RECORDER = """
window.__rowStatuses = {};
new MutationObserver((records) => {
  const note = (el) => {
    if (!(el instanceof HTMLElement) || el.dataset.testid !== "order-row") return;
    const seen = (window.__rowStatuses[el.dataset.orderId] ||= []);
    if (seen[seen.length - 1] !== el.dataset.status) seen.push(el.dataset.status);
  };
  for (const r of records) {
    if (r.type === "attributes") note(r.target);
    else r.addedNodes.forEach(note);
  }
}).observe(document, {subtree: true, childList: true, attributes: true,
                      attributeFilter: ["data-status"]});
// And everything the live region announces to screen readers.
window.__announced = [];
new MutationObserver(() => {
  const region = document.getElementById("announcer");
  if (region && region.textContent) window.__announced.push(region.textContent);
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


@pytest.fixture
async def page() -> AsyncIterator[Any]:
    async with pw.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport={"width": 1440, "height": 1000})
            await context.add_init_script(ROW_RECORDER)
            yield await context.new_page()
        finally:
            await browser.close()


async def shows_balance(page: Any, token: str, column: str, value: float) -> None:
    """Wait until the wallet card's row of the token shows the value (as the API's
    number, compared as a number: the page keeps what the JSON said)."""
    await page.wait_for_function(
        """([token, column, value]) => {
            const row = document.querySelector(`[data-testid=balance-row][data-token=${token}]`);
            return row !== null && Math.abs(Number(row.dataset[column]) - value) < 1e-9;
        }""",
        arg=[token, column, value],
        timeout=LIVE,
    )


async def place(page: Any, **fields: str) -> str:
    """Fill the order form, submit it, and return the new order's id."""
    form = page.get_by_test_id("order-form")
    previous = await form.get_attribute("data-last-order-id")
    assert previous is not None  # "" until the first order is placed
    for testid, value in fields.items():
        await page.get_by_test_id(testid).fill(value)
    await page.get_by_test_id("submit-order").click()
    # On a refusal the message shows the API's error, and this expectation prints it.
    await pw.expect(page.get_by_test_id("form-message")).to_have_text(re.compile("^Placed"))
    await pw.expect(form).not_to_have_attribute("data-last-order-id", previous)
    order_id = await form.get_attribute("data-last-order-id")
    assert order_id
    return order_id


async def test_blotter_places_orders_and_follows_them_live(
    server: Process, page: Any, client: httpx.AsyncClient
) -> None:
    expect = pw.expect
    started = time.monotonic()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

    await page.goto(server.url + "/")
    user = f"blotter-{time.time_ns() % 10**12}"
    await page.get_by_test_id("user-id").fill(user)
    await page.get_by_test_id("user-id").press("Enter")
    # The per-user WebSocket is subscribed before the order exists: every event is live.
    await expect(page.get_by_test_id("ws-status")).to_have_attribute("data-state", "open")
    await expect(page.get_by_test_id("order-row")).to_have_count(0)

    # A market order SOL -> USDC through the form, followed until it is confirmed.
    await expect(page.get_by_test_id("token-in")).to_have_value("SOL")
    await page.get_by_test_id("token-out").select_option("USDC")
    market_id = await place(page, **{"amount-in": "1.5", "slippage": "300"})
    market_row = page.locator(f'[data-testid="order-row"][data-order-id="{market_id}"]')
    await expect(market_row).to_have_attribute("data-status", "confirmed", timeout=LIVE)
    record = (await client.get(f"/api/orders/{market_id}")).json()
    assert record["userId"] == user and record["status"] == "confirmed"
    assert record["type"] == "market" and record["amountIn"] == 1.5
    assert record["slippageBps"] == 300

    # The wallet card reads the balances again once the order is done: it shows what the
    # API says now, SOL down by what was sold and the fees, USDC up.
    wallet = (await client.get("/api/balances", params={"userId": user})).json()
    await expect(page.get_by_test_id("wallet-address")).to_have_text(wallet["wallet"])
    for token in ("SOL", "USDC"):
        await shows_balance(page, token, "total", wallet["balances"][token]["total"])
    assert wallet["balances"]["USDC"]["total"] > START["USDC"]
    assert wallet["balances"]["SOL"]["total"] < START["SOL"] - 1.5

    seen = (await page.evaluate("window.__rowStatuses"))[market_id]
    assert seen[0] == "pending" and seen[-1] == "confirmed", seen
    assert {"routing", "building", "submitted"} <= set(seen), seen

    # A limit order far above the market waits.
    await page.get_by_test_id("type-limit").check()
    await expect(page.get_by_test_id("limit-price")).to_be_visible()
    limit_id = await place(page, **{"amount-in": "1", "limit-price": "100000", "ttl": "300"})
    limit_row = page.locator(f'[data-testid="order-row"][data-order-id="{limit_id}"]')
    await expect(limit_row).to_have_attribute("data-status", "waiting", timeout=LIVE)
    await expect(page.get_by_test_id("order-row")).to_have_count(2)
    # Its input is reserved in the wallet card (a waiting order's event refreshes it).
    await shows_balance(page, "SOL", "reserved", 1)

    # Each status change was announced in the polite live region.
    announcer = page.get_by_test_id("status-announcer")
    await expect(announcer).to_have_attribute("aria-live", "polite")
    announced = [a for a in await page.evaluate("window.__announced") if market_id[:8] in a]
    assert any(a.endswith(": routing") for a in announced), announced
    assert any(": confirmed, received " in a for a in announced), announced

    # The market order's detail: both venues' quotes, the winner, route, fill, tx, timeline.
    # Chosen from the table, it takes the focus; its row is the selected one.
    await market_row.click()
    detail = page.get_by_test_id("order-detail")
    await expect(detail).to_have_attribute("data-order-id", market_id)
    await expect(detail).to_be_focused()
    await expect(market_row).to_have_attribute("aria-selected", "true")
    await expect(limit_row).to_have_attribute("aria-selected", "false")
    await expect(detail).to_have_attribute("data-status", "confirmed")
    for venue in ("raydium", "meteora"):
        quote = page.get_by_test_id(f"quote-{venue}")
        await expect(quote).to_be_visible()
        await expect(quote).to_contain_text(re.compile(r"\d+\.\d+\s*USDC"))
        shown_out = float(await quote.get_attribute("data-amount-out") or "nan")
        assert shown_out == record["quotes"][venue]["amountOut"]
    winner = detail.locator('[data-winner="true"]')
    await expect(winner).to_have_count(1)
    await expect(winner).to_have_attribute("data-testid", f"quote-{record['dexUsed']}")
    await expect(page.get_by_test_id("detail-txhash")).to_have_text(BASE58)
    await expect(page.get_by_test_id("detail-txhash")).to_have_text(record["txHash"])
    await expect(page.get_by_test_id("detail-route")).to_contain_text("wSOL → USDC")
    # What the fill cost: the landing slot, the venue's fee, the network fee and its
    # parts (base, priority, rent), the price impact and the price after all fees.
    landed = f"slot{record['slot']} · {record['commitment']}"
    if record.get("finalizedAtSlot") is not None:
        landed += f" · final by slot {record['finalizedAtSlot']}"
    await expect(page.get_by_test_id("detail-slot")).to_have_text(landed)
    venue_fee = record["venueFee"]
    await expect(page.get_by_test_id("detail-venue-fee")).to_contain_text(venue_fee["token"])
    network = page.get_by_test_id("detail-network-fee")
    await expect(network).to_contain_text(f"{record['networkFee']:.9f}".rstrip("0") + " SOL")
    await expect(network).to_contain_text(re.compile(r"base 0\.000005 \+ priority [\d.]+"))
    await expect(page.get_by_test_id("detail-price-impact")).to_have_text(
        re.compile(r"^price impact\d+\.\d{3}%$")
    )
    await expect(page.get_by_test_id("detail-effective-price")).to_contain_text("USDC/SOL")
    events = (await client.get(f"/api/orders/{market_id}/events")).json()["events"]
    timeline = page.get_by_test_id("timeline-event")
    await expect(timeline).to_have_count(len(events))
    shown = await timeline.evaluate_all("els => els.map(e => e.dataset.status)")
    assert shown == [e["status"] for e in events]

    # The price chart has drawn both venues and the reference over several polls.
    chart = page.get_by_test_id("price-chart")
    await expect(chart).to_have_attribute("data-points", re.compile(r"^([2-9]|\d{2,})$"))
    for line in ("raydium", "meteora", "reference"):
        path = chart.locator(f'path[data-venue="{line}"]')
        await expect(path).to_have_attribute("d", re.compile(r"^M[\d.]+,[\d.]+L"))
    # Its label says the prices the legend shows (read together: the chart keeps polling).
    label, legend = await page.evaluate(
        """() => [document.getElementById("chart").getAttribute("aria-label"),
                  ["raydium", "meteora", "reference"].map(
                      (k) => document.getElementById(`lg-${k}`).textContent)]"""
    )
    assert re.fullmatch(
        r"SOL/USDC prices at [\d:]+, USDC per SOL: Raydium ([\d.]+), Meteora ([\d.]+), "
        r"reference ([\d.]+)",
        label,
    ), label
    assert re.findall(r"\d+\.\d{3}\b", label) == legend, (label, legend)

    OUTPUT.mkdir(exist_ok=True)
    await page.screenshot(path=str(OUTPUT / "blotter.png"), full_page=True)

    # Escape closes the detail and gives the focus back to the row that opened it.
    await page.keyboard.press("Escape")
    await expect(detail).to_be_hidden()
    await expect(market_row).to_be_focused()
    await expect(market_row).to_have_attribute("aria-selected", "false")

    # Cancel the waiting order from its row; the row follows live.
    await limit_row.get_by_test_id("cancel-order").click()
    await expect(limit_row).to_have_attribute("data-status", "cancelled", timeout=LIVE)
    assert (await client.get(f"/api/orders/{limit_id}")).json()["status"] == "cancelled"
    await shows_balance(page, "SOL", "reserved", 0)  # released by the cancel

    assert errors == [], errors
    assert time.monotonic() - started < 30  # no sleeps: well under this on a quiet machine


SET_VISIBILITY = """(hidden) => {
  Object.defineProperty(document, "hidden", {configurable: true, get: () => hidden});
  Object.defineProperty(document, "visibilityState", {configurable: true,
                        get: () => (hidden ? "hidden" : "visible")});
  document.dispatchEvent(new Event("visibilitychange"));
}"""


async def test_blotter_is_accessible_and_rests_while_hidden(server: Process, page: Any) -> None:
    """axe-core finds nothing serious; motion and polling follow the user's settings."""
    expect = pw.expect
    await page.goto(server.url + "/")
    await page.get_by_test_id("user-id").fill(f"a11y-{time.time_ns() % 10**12}")
    await page.get_by_test_id("user-id").press("Enter")
    await expect(page.get_by_test_id("ws-status")).to_have_attribute("data-state", "open")
    order_id = await place(page, **{"amount-in": "1"})
    row = page.locator(f'[data-testid="order-row"][data-order-id="{order_id}"]')
    await expect(row).to_have_attribute("data-status", "confirmed", timeout=LIVE)
    await row.click()
    await expect(page.get_by_test_id("timeline-event").last).to_have_attribute(
        "data-status", "confirmed"
    )
    await expect(page.get_by_test_id("price-chart")).to_have_attribute(
        "data-points", re.compile(r"^[1-9]")
    )

    # axe-core over the whole page, with a filled order's detail open.
    results = await axe.Axe().run(page)
    grave = [
        f"{v['impact']} {v['id']}: {v['help']} at {[n['target'] for n in v['nodes']][:5]}"
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert grave == [], "\n".join(grave)

    # Reduced motion: the row's status flash (and every other animation) is off.
    motion = "(el) => getComputedStyle(el).animationName"
    assert await row.evaluate(motion) != "none"
    await page.emulate_media(reduced_motion="reduce")
    assert await row.evaluate(motion) == "none"
    await page.emulate_media(reduced_motion="no-preference")

    # A hidden tab polls no prices; shown again, it polls at once.
    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if "/api/market/prices" in r.url else None)
    chart = page.get_by_test_id("price-chart")
    await page.evaluate(SET_VISIBILITY, True)
    await expect(chart).to_have_attribute("data-polling", "off")
    polls.clear()
    await page.wait_for_timeout(3500)  # over two poll intervals (1.5 s): absence needs time
    assert polls == []
    async with page.expect_request(re.compile(r"/api/market/prices")):
        await page.evaluate(SET_VISIBILITY, False)
    await expect(chart).to_have_attribute("data-polling", "on")
