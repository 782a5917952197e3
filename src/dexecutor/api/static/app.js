// dexecutor blotter: plain JS, no framework, no build step.
// Orders come from GET /api/orders and then live from ws://host/ws/orders?userId=…;
// the chart polls GET /api/market/prices.
"use strict";

(() => {
  const TERMINAL = new Set(["confirmed", "failed", "cancelled", "expired"]);
  const CANCELLABLE = new Set(["pending", "waiting"]);
  // What a landed transaction reports (confirmed, and failed/retrying after a revert).
  const FILL_FIELDS = ["slot", "commitment", "finalizedAtSlot", "venueFee", "networkFee",
    "networkFeeDetail", "priceImpact", "effectivePrice"];
  const VENUES = ["raydium", "meteora"];
  const VENUE_NAME = { raydium: "Raydium", meteora: "Meteora" };
  const USER_RE = /^[A-Za-z0-9_.:-]{1,64}$/;
  const DECIMAL_RE = /^(\d+(\.\d*)?|\.\d+)$/;
  const CHART_WINDOW_MS = 5 * 60 * 1000;
  const PRICE_POLL_MS = 1500;
  const TYPE_HINT = {
    market: "Routed at once to the venue that gives the most output.",
    limit: "Waits until a venue quotes at or better than your limit price, then executes.",
    sniper: "Waits for the token's pool to launch, then buys at once.",
  };

  const $ = (sel, root = document) => root.querySelector(sel);

  // ---------- small DOM helper: never innerHTML with data ----------
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "dataset") Object.assign(el.dataset, v);
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c == null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  const SVG_NS = "http://www.w3.org/2000/svg";
  function s(tag, attrs) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
    return el;
  }

  // ---------- formatting ----------
  function fmtNum(x, opts = {}) {
    if (x == null || x === "" || Number.isNaN(Number(x))) return "–";
    const n = Number(x);
    const a = Math.abs(n);
    if (a !== 0 && a < 0.001) return String(Number(n.toPrecision(4)));
    const digits = opts.digits ?? (a >= 10000 ? 2 : a >= 1 ? 4 : 6);
    return n.toLocaleString("en-US", { maximumFractionDigits: digits });
  }
  const fmtPct = (x, digits = 2) => (x == null ? "–" : `${(Number(x) * 100).toFixed(digits)}%`);
  // SOL to the lamport (9 decimals), never in exponent form: fees are millionths of a SOL.
  function fmtSol(x) {
    if (x == null || Number.isNaN(Number(x))) return "–";
    return Number(x).toFixed(9).replace(/\.?0+$/, "");
  }
  function fmtTime(iso, ms = false) {
    if (!iso) return "–";
    const d = new Date(iso);
    const t = d.toLocaleTimeString("en-GB", { hour12: false });
    return ms ? `${t}.${String(d.getMilliseconds()).padStart(3, "0")}` : t;
  }
  const shortId = (id) => (id ? id.slice(0, 8) : "");
  const venueName = (v) => VENUE_NAME[v] || v || "–";
  const tsOf = (iso) => (iso ? Date.parse(iso) : 0);

  function badge(status, extra) {
    return h("span", { class: `badge st-${status}`, "data-testid": "status-badge" }, status, extra);
  }

  // ---------- state ----------
  const params = new URLSearchParams(location.search);
  if (params.get("apiKey")) {
    localStorage.setItem("dexecutor.apiKey", params.get("apiKey"));
    params.delete("apiKey");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? `?${rest}` : ""));
  }
  const apiKey = localStorage.getItem("dexecutor.apiKey") || "";

  const state = {
    userId: (params.get("userId") && USER_RE.test(params.get("userId")) && params.get("userId"))
      || localStorage.getItem("dexecutor.userId") || "demo",
    orders: new Map(),    // orderId -> record (+ _seq, _at: the newest event applied)
    rows: new Map(),      // orderId -> <tr>
    selected: null,
    opener: null,         // the order whose row opened the detail (focus returns there)
    detailEvents: new Map(), // seq -> event of the selected order
    tokens: [],
    filter: "all",
    nextBefore: null,
    prices: [],
    balances: null,       // the last GET /api/balances answer for userId
  };

  // ---------- HTTP ----------
  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || `HTTP ${status}`);
      this.status = status;
      this.body = body;
    }
  }
  async function api(path, { method = "GET", body, headers = {} } = {}) {
    const init = { method, headers: { accept: "application/json", ...headers } };
    if (apiKey) init.headers["x-api-key"] = apiKey;
    if (body !== undefined) {
      init.headers["content-type"] = "application/json";
      init.body = typeof body === "string" ? body : JSON.stringify(body);
    }
    const res = await fetch(path, init);
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = { message: text }; }
    if (!res.ok) throw new ApiError(res.status, data);
    return data;
  }

  function uuid() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  // ---------- screen reader announcements ----------
  // One polite live region: each status change of the user's orders is read out once.
  function announce(text) {
    $("#announcer").textContent = text;
  }

  function statusWords(o) {
    const swap = `${fmtNum(o.amountIn)} ${o.tokenIn || ""} to ${o.tokenOut || ""}`;
    let words = `Order ${shortId(o.orderId)}, ${swap}: ${o.status}`;
    if (o.status === "confirmed" && o.amountOut != null) {
      words += `, received ${fmtNum(o.amountOut)} ${o.tokenOut} on ${venueName(o.dexUsed)}`;
    } else if (o.failReason) {
      words += ` (${o.failReason.replace(/_/g, " ")})`;
    }
    return words;
  }

  // ---------- toasts ----------
  function toast(text, kind = "info") {
    const el = h("div", { class: `toast ${kind}` }, text);
    $("#toasts").append(el);
    setTimeout(() => el.classList.add("out"), 3600);
    setTimeout(() => el.remove(), 4000);
  }

  // ---------- orders: merging REST records and live events ----------
  function mergeRecord(rec) {
    const cur = state.orders.get(rec.orderId);
    if (cur && tsOf(cur._at) > tsOf(rec.updatedAt)) return cur; // live events are ahead
    const merged = { ...cur, ...rec, _seq: cur ? cur._seq : 0, _at: rec.updatedAt };
    state.orders.set(rec.orderId, merged);
    return merged;
  }

  async function refreshRecord(orderId) {
    try {
      const rec = await api(`/api/orders/${encodeURIComponent(orderId)}`);
      if (rec.userId !== state.userId) return;
      mergeRecord(rec);
      renderOrders();
      if (state.selected === orderId) renderDetail();
    } catch { /* the next event or resync will bring it */ }
  }

  function applyEvent(ev) {
    if (!ev.orderId || !ev.status || ev.userId && ev.userId !== state.userId) return;
    let o = state.orders.get(ev.orderId);
    let unknown = false;
    if (!o) {
      unknown = true;
      o = { orderId: ev.orderId, userId: state.userId, status: ev.status, attempts: 0,
        createdAt: ev.at, updatedAt: ev.at, _seq: 0, _at: "" };
      state.orders.set(ev.orderId, o);
    }
    if (state.selected === ev.orderId) state.detailEvents.set(ev.seq, ev);
    if ((o._seq && ev.seq <= o._seq) || tsOf(ev.at) < tsOf(o._at)) {
      if (state.selected === ev.orderId) renderDetail();
      return; // already known, or older than the record we hold
    }
    const gap = o._seq > 0 && ev.seq > o._seq + 1;
    const before = o.status;
    o._seq = ev.seq;
    o._at = ev.at;
    o.updatedAt = ev.at;
    o.status = ev.status;
    if (ev.attempt) o.attempts = Math.max(o.attempts || 0, ev.attempt);
    for (const k of ["type", "tokenIn", "tokenOut", "amountIn", "quotes", "expectedAmountOut",
      "minAmountOut", "route", "txHash", "executedPrice", "amountOut", "routePlan", "bestSingle",
      "splitGainBps"]) {
      if (ev[k] !== undefined) o[k] = ev[k];
    }
    if (ev.status === "submitted") {
      // The slot it was sent at; `slot` on the order is where its swap landed.
      o.sentSlot = ev.slot;
      o.lastValidBlockHeight = ev.lastValidBlockHeight;
      o.computeUnitPrice = ev.computeUnitPrice;
    } else {
      for (const k of FILL_FIELDS) if (ev[k] !== undefined) o[k] = ev[k];
    }
    if (ev.dex) o.dexUsed = ev.dex;
    if (ev.status === "waiting" && ev.trigger) {
      o.trigger = ev.trigger;
      if (ev.trigger.limitPrice != null) o.limitPrice = ev.trigger.limitPrice;
      if (ev.trigger.expiresAt) o.expiresAt = ev.trigger.expiresAt;
    }
    if (["failed", "cancelled", "expired"].includes(ev.status)) o.failReason = ev.reason || null;
    if (ev.status === "retrying") o.lastReason = ev.reason;
    renderOrders(before !== ev.status ? ev.orderId : null);
    if (before !== ev.status) announce(statusWords(o));
    // A fill, a failure or a new reservation changes what the wallet holds.
    if (before !== ev.status && (TERMINAL.has(ev.status) || ev.status === "waiting")) {
      scheduleBalances();
    }
    if (state.selected === ev.orderId) renderDetail();
    if (unknown || gap) refreshRecord(ev.orderId);
  }

  async function loadOrders() {
    const user = state.userId;
    try {
      const page = await api(`/api/orders?userId=${encodeURIComponent(user)}&limit=50`);
      if (user !== state.userId) return;
      for (const rec of page.orders) mergeRecord(rec);
      if (state.nextBefore === null || state.orders.size <= 50) state.nextBefore = page.nextBefore;
      renderOrders();
      if (state.selected) renderDetail();
    } catch (err) {
      toast(`Could not load orders: ${err.message}`, "error");
    }
  }

  async function loadOlder() {
    if (!state.nextBefore) return;
    const user = state.userId;
    try {
      const page = await api(`/api/orders?userId=${encodeURIComponent(user)}&limit=50`
        + `&before=${encodeURIComponent(state.nextBefore)}`);
      if (user !== state.userId) return;
      for (const rec of page.orders) mergeRecord(rec);
      state.nextBefore = page.nextBefore;
      renderOrders();
    } catch (err) {
      toast(`Could not load older orders: ${err.message}`, "error");
    }
  }

  async function cancelOrder(orderId) {
    try {
      await api(`/api/orders/${encodeURIComponent(orderId)}`, { method: "DELETE" });
      toast(`Cancelled ${shortId(orderId)}`);
    } catch (err) {
      toast(`Cancel refused: ${err.message}`, "error");
    }
  }

  // ---------- wallet ----------
  // Read when the user's stream opens and again after each of their orders ends (or
  // starts waiting): a burst of fills is one read, and a stale answer never wins.
  const wallet = { seq: 0, timer: null };
  function scheduleBalances() {
    clearTimeout(wallet.timer);
    wallet.timer = setTimeout(loadBalances, 150);
  }

  async function loadBalances() {
    const user = state.userId;
    const seq = ++wallet.seq;
    const card = $("[data-testid=balances]");
    try {
      const data = await api(`/api/balances?userId=${encodeURIComponent(user)}`);
      if (seq !== wallet.seq || user !== state.userId) return;
      state.balances = data;
      card.dataset.state = "ready";
      $("#balances-msg").textContent = "";
    } catch (err) {
      if (seq !== wallet.seq || user !== state.userId) return;
      state.balances = null;
      card.dataset.state = "error";
      $("#balances-msg").textContent = `Balances unavailable: ${err.message}`;
    }
    renderBalances();
    card.dataset.loads = String(Number(card.dataset.loads || 0) + 1);
  }

  function renderBalances() {
    const b = state.balances;
    const address = $("#w-address");
    address.textContent = b && b.wallet ? b.wallet : "";
    address.title = b && b.wallet ? `wallet address ${b.wallet}` : "";
    const rows = b ? Object.entries(b.balances || {}) : [];
    $("#balances-body").replaceChildren(...rows.map(([token, v]) =>
      h("tr", { "data-testid": "balance-row", "data-token": token, "data-total": String(v.total),
        "data-available": String(v.available), "data-reserved": String(v.reserved),
        title: `${token}: ${v.total} on chain` },
      h("th", { scope: "row" }, token),
      h("td", { class: "num" }, fmtNum(v.available)),
      h("td", { class: `num${Number(v.reserved) ? "" : " zero"}` }, fmtNum(v.reserved)))));
  }

  // ---------- orders table ----------
  function matchesFilter(o) {
    if (state.filter === "open") return !TERMINAL.has(o.status);
    if (state.filter === "done") return TERMINAL.has(o.status);
    return true;
  }

  function priceCell(o) {
    if (o.executedPrice != null) return fmtNum(o.executedPrice);
    if (o.type === "limit" && o.limitPrice != null) {
      return h("span", { class: "muted", title: "limit price" }, `≥ ${fmtNum(o.limitPrice)}`);
    }
    return "–";
  }

  function outCell(o) {
    if (o.amountOut != null) return `${fmtNum(o.amountOut)}`;
    if (o.expectedAmountOut != null && !TERMINAL.has(o.status)) {
      return h("span", { class: "muted", title: "expected" }, `≈ ${fmtNum(o.expectedAmountOut)}`);
    }
    return "–";
  }

  function fillRow(tr, o) {
    tr.dataset.status = o.status;
    tr.classList.toggle("selected", state.selected === o.orderId);
    tr.setAttribute("aria-selected", String(state.selected === o.orderId));
    const attempt = o.attempts > 1 && !["pending", "waiting"].includes(o.status)
      ? h("small", { class: "attempt", title: "attempt" }, `×${o.attempts}`) : null;
    const cancel = CANCELLABLE.has(o.status)
      ? h("button", { type: "button", class: "mini", "data-testid": "cancel-order",
        title: "Cancel this order", "aria-label": "cancel order",
        onclick: (e) => { e.stopPropagation(); cancelOrder(o.orderId); } }, "✕")
      : null;
    tr.replaceChildren(
      h("td", { title: o.orderId }, h("div", { class: "id-cell" },
        h("span", {}, h("span", { class: "mono" }, shortId(o.orderId)), " ",
          h("span", { class: `type t-${o.type}` }, o.type || "–")),
        h("small", { class: "muted" }, fmtTime(o.createdAt)))),
      h("td", { class: "pair-cell" },
        h("b", {}, fmtNum(o.amountIn)), ` ${o.tokenIn || "?"}`,
        h("span", { class: "arrow" }, "→"), o.tokenOut || "?"),
      h("td", { class: "status-cell" }, badge(o.status, attempt), cancel),
      h("td", {}, o.dexUsed ? h("span", { class: `venue v-${o.dexUsed}` }, venueName(o.dexUsed)) : h("span", { class: "muted" }, "–")),
      h("td", { class: "num" }, priceCell(o)),
      h("td", { class: "num" }, outCell(o)),
    );
  }

  function renderOrders(changedId = null) {
    const body = $("#orders-body");
    const list = [...state.orders.values()]
      .sort((a, b) => tsOf(b.createdAt) - tsOf(a.createdAt) || (a.orderId < b.orderId ? 1 : -1));
    const visible = list.filter(matchesFilter);
    for (const [id, tr] of state.rows) {
      if (!state.orders.has(id)) { tr.remove(); state.rows.delete(id); }
    }
    let prev = null;
    for (const o of list) {
      let tr = state.rows.get(o.orderId);
      if (!tr) {
        tr = h("tr", { "data-testid": "order-row", "data-order-id": o.orderId, tabindex: "0",
          onclick: () => select(o.orderId, true),
          onkeydown: (e) => {
            if (e.key === "Enter" || e.key === " ") { e.preventDefault(); select(o.orderId, true); }
          } });
        state.rows.set(o.orderId, tr);
      }
      fillRow(tr, o);
      tr.hidden = !matchesFilter(o);
      const want = prev ? prev.nextSibling : body.firstChild;
      if (want !== tr) body.insertBefore(tr, want);
      prev = tr;
      if (o.orderId === changedId) {
        tr.classList.remove("flash");
        void tr.offsetWidth; // restart the animation
        tr.classList.add("flash");
      }
    }
    const open = list.filter((o) => !TERMINAL.has(o.status)).length;
    $("#orders-count").textContent = list.length ? `${list.length} shown · ${open} open` : "";
    $("#orders-empty").hidden = visible.length > 0;
    $("#orders-empty").textContent = list.length
      ? "No orders match this filter."
      : `No orders yet for “${state.userId}”. Place one with the form.`;
    $("#more").hidden = !state.nextBefore;
  }

  // ---------- detail panel ----------
  // `byUser`: chosen from the table, so focus moves to the detail it opens (and goes
  // back to the row when the detail closes); a new order opens its detail unfocused.
  async function select(orderId, byUser = false) {
    const changed = state.selected !== orderId;
    state.selected = orderId;
    if (changed) state.detailEvents = new Map();
    renderOrders();
    renderDetail();
    if (byUser) {
      state.opener = orderId;
      $("#detail").focus();
    }
    try {
      const [rec, evs] = await Promise.all([
        api(`/api/orders/${encodeURIComponent(orderId)}`),
        api(`/api/orders/${encodeURIComponent(orderId)}/events`),
      ]);
      if (state.selected !== orderId) return;
      mergeRecord(rec);
      for (const ev of evs.events) state.detailEvents.set(ev.seq, ev);
      renderOrders();
      renderDetail();
    } catch (err) {
      toast(`Could not load order: ${err.message}`, "error");
    }
  }

  function closeDetail() {
    const hadFocus = $("#detail").contains(document.activeElement);
    state.selected = null;
    state.detailEvents = new Map();
    $("#detail").hidden = true;
    document.body.classList.remove("with-detail");
    renderOrders();
    const row = state.rows.get(state.opener);
    if (hadFocus && row && !row.hidden) row.focus();
    state.opener = null;
  }

  function kv(label, value, attrs = {}) {
    return h("div", { class: "kv", ...attrs }, h("span", { class: "k" }, label), h("span", { class: "v" }, value));
  }

  function stepper(o, events) {
    let path = o.type === "market" || !o.type
      ? ["pending", "routing", "building", "submitted", "confirmed"]
      : ["pending", "waiting", "routing", "building", "submitted", "confirmed"];
    const seen = new Set(events.map((e) => e.status));
    seen.add(o.status);
    const bad = ["failed", "cancelled", "expired"].includes(o.status) ? o.status : null;
    let reached = path.indexOf(o.status);
    if (reached < 0) reached = Math.max(0, ...path.map((p, i) => (seen.has(p) ? i : -1)));
    let current = reached;
    if (bad) {
      path = [...path.slice(0, reached + 1), bad];
      current = path.length; // everything done
    } else if (o.status === "retrying") {
      path = [...path.slice(0, reached + 1), "retrying", ...path.slice(reached + 1)];
      current = reached + 1;
    } else if (o.status === "confirmed") {
      current = path.length;
    }
    return h("ol", { class: "stepper", "data-testid": "stepper" }, path.map((p, i) => {
      let cls = `step st-${p}`;
      if (i < current) cls += " done";
      if (i === current) cls += " current";
      if (bad && i === path.length - 1) cls += " end";
      return h("li", { class: cls }, h("i"), h("span", {}, p));
    }));
  }

  function quoteCards(o) {
    const quotes = o.quotes || {};
    const have = VENUES.some((v) => quotes[v]);
    if (!have) {
      const why = o.status === "waiting" ? "Quotes are taken when the order fires."
        : TERMINAL.has(o.status) ? "No quotes were recorded." : "Waiting for quotes…";
      return h("p", { class: "muted small" }, why);
    }
    return h("div", { class: "quotes" }, VENUES.map((v) => {
      const q = quotes[v];
      const winner = o.dexUsed === v;
      if (!q) {
        return h("div", { class: "quote", "data-testid": `quote-${v}` },
          h("div", { class: "q-head" }, venueName(v)), h("p", { class: "muted small" }, "no quote"));
      }
      if (q.error) {
        return h("div", { class: "quote q-error", "data-testid": `quote-${v}` },
          h("div", { class: "q-head" }, venueName(v), h("span", { class: "tag bad" }, q.error.replace(/_/g, " "))),
          h("p", { class: "small" }, q.message || ""));
      }
      return h("div", { class: `quote v-${v}${winner ? " winner" : ""}`, "data-testid": `quote-${v}`,
        "data-winner": winner ? "true" : "false", "data-amount-out": String(q.amountOut) },
      h("div", { class: "q-head" }, venueName(v), winner ? h("span", { class: "tag" }, "routed") : null),
      h("div", { class: "q-out" }, fmtNum(q.amountOut), h("small", {}, ` ${o.tokenOut || ""}`)),
      kv("price", fmtNum(q.price)),
      kv("fee", fmtPct(q.fee, 3)),
      kv("impact", fmtPct(q.priceImpact, 3)));
    }));
  }

  function why(ev) {
    if (!ev.message) return ev.reason || "";
    return ev.message.includes(ev.reason) ? ev.message : `${ev.reason}: ${ev.message}`;
  }

  // A transaction that landed paid its network fee, even when it reverted.
  const paid = (ev) => (ev.networkFee != null ? ` · network fee ${fmtSol(ev.networkFee)} SOL` : "");

  function eventNote(ev, o) {
    switch (ev.status) {
      case "pending": return `${ev.type || o.type || ""} ${fmtNum(ev.amountIn ?? o.amountIn)} ${ev.tokenIn || o.tokenIn || ""} → ${ev.tokenOut || o.tokenOut || ""}`;
      case "waiting": return ev.trigger ? ev.trigger.description || ev.trigger.kind : "";
      case "routing": return `attempt ${ev.attempt}: asking both venues`;
      case "building": return ev.dex ? `${venueName(ev.dex)} chosen · expect ${fmtNum(ev.expectedAmountOut)}, min ${fmtNum(ev.minAmountOut)}` : "";
      case "submitted": return ev.txHash ? `tx ${ev.txHash.slice(0, 10)}… on ${venueName(ev.dex)}`
        + (ev.slot != null ? ` · slot ${ev.slot}` : "")
        + (ev.computeUnitPrice != null ? ` · priority ${ev.computeUnitPrice} µlamports/CU` : "") : "";
      case "confirmed": return `filled ${fmtNum(ev.amountOut)} at ${fmtNum(ev.executedPrice)}`
        + (ev.slot != null ? ` · slot ${ev.slot}` : "") + paid(ev);
      case "retrying": return `${why(ev)} · attempt ${ev.nextAttempt} in ${ev.delayMs} ms${paid(ev)}`;
      case "failed": return why(ev) + paid(ev);
      default: return ev.reason || "";
    }
  }

  function timeline(o, events) {
    if (!events.length) return h("p", { class: "muted small" }, "Loading events…");
    const t0 = tsOf(events[0].at);
    return h("ol", { class: "timeline", "data-testid": "timeline" }, events.map((ev) =>
      h("li", { class: `st-${ev.status}`, "data-testid": "timeline-event", "data-status": ev.status },
        h("i", { class: "tl-dot" }),
        h("div", { class: "tl-main" },
          h("div", { class: "tl-line" }, badge(ev.status),
            h("span", { class: "mono small" }, fmtTime(ev.at, true)),
            ev.seq > 1 ? h("span", { class: "muted small" }, `+${((tsOf(ev.at) - t0) / 1000).toFixed(3)} s`) : null),
          h("div", { class: "tl-note small" }, eventNote(ev, o))))));
  }

  function fillSection(o) {
    const items = [];
    const route = Array.isArray(o.route) ? o.route.join(" → ") : null;
    items.push(kv("route", route ? h("span", {}, h("span", { class: "mono" }, route),
      o.dexUsed ? h("span", { class: "muted" }, ` on ${venueName(o.dexUsed)}`) : null) : "–",
    { "data-testid": "detail-route" }));
    items.push(kv("expected", o.expectedAmountOut != null ? `${fmtNum(o.expectedAmountOut)} ${o.tokenOut}` : "–"));
    items.push(kv("minimum", o.minAmountOut != null ? `${fmtNum(o.minAmountOut)} ${o.tokenOut}` : "–"));
    let slip = null;
    if (o.amountOut != null && o.expectedAmountOut) {
      const bps = (Number(o.amountOut) / Number(o.expectedAmountOut) - 1) * 10000;
      slip = h("small", { class: bps < 0 ? "neg" : "pos" }, ` (${bps >= 0 ? "+" : ""}${bps.toFixed(1)} bps)`);
    }
    items.push(kv("filled", o.amountOut != null
      ? h("span", {}, h("b", {}, `${fmtNum(o.amountOut)} ${o.tokenOut}`), slip) : "–", { "data-testid": "detail-fill" }));
    items.push(kv("price", o.executedPrice != null ? `${fmtNum(o.executedPrice)} ${o.tokenOut}/${o.tokenIn}` : "–"));
    items.push(...feeRows(o));
    if (Array.isArray(o.routePlan) && o.routePlan.length > 1) {
      items.push(kv("legs", h("span", { "data-testid": "detail-legs" }, o.routePlan.map((leg) =>
        h("div", { class: "mono small" },
          `${leg.percent}% ${leg.venue}: ${leg.path.join(" → ")} · ${fmtNum(leg.amountIn)} → ${fmtNum(leg.amountOut)}`)))));
      if (o.splitGainBps != null) {
        items.push(kv("split gain", `${fmtNum(o.splitGainBps)} bps over the best single venue`));
      }
    }
    const eq = o.executionQuality;
    if (eq) {
      items.push(kv("quality", h("span", { "data-testid": "detail-quality" },
        `shortfall ${eq.shortfallBps != null ? fmtNum(eq.shortfallBps) : "–"} bps vs arrival mid ${eq.arrivalMid != null ? fmtNum(eq.arrivalMid) : "–"}` +
        (Number(eq.splitGainBps) ? ` · split +${fmtNum(eq.splitGainBps)} bps` : ""))));
    }
    items.push(kv("tx", o.txHash
      ? h("span", { class: "tx" },
        h("span", { class: "mono hash", title: o.txHash, "data-testid": "detail-txhash" }, o.txHash),
        h("button", { type: "button", class: "mini", title: "copy",
          onclick: () => navigator.clipboard && navigator.clipboard.writeText(o.txHash).then(() => toast("Copied")) }, "copy"))
      : "–"));
    return h("div", { class: "kvs" }, items);
  }

  // What the fill cost, as the chain and the venue reported it; nothing until it landed.
  function feeRows(o) {
    const rows = [];
    if (o.slot != null) {
      const final = o.finalizedAtSlot != null ? ` · final by slot ${o.finalizedAtSlot}` : "";
      rows.push(kv("slot", `${o.slot}${o.commitment ? ` · ${o.commitment}` : ""}${final}`,
        { "data-testid": "detail-slot" }));
    }
    if (o.venueFee && o.venueFee.amount != null) {
      rows.push(kv("venue fee", `${fmtNum(o.venueFee.amount)} ${o.venueFee.token || ""}`,
        { "data-testid": "detail-venue-fee" }));
    }
    if (o.networkFee != null) {
      const d = o.networkFeeDetail;
      const parts = d ? ["base", "priority", "rent"].filter((k) => d[k] != null)
        .map((k) => `${k} ${fmtSol(d[k])}`) : [];
      rows.push(kv("network fee", h("span", {}, `${fmtSol(o.networkFee)} SOL`,
        parts.length ? h("small", { class: "muted fee-detail" }, parts.join(" + ")) : null),
      { "data-testid": "detail-network-fee" }));
    }
    if (o.priceImpact != null) {
      rows.push(kv("price impact", fmtPct(o.priceImpact, 3), { "data-testid": "detail-price-impact" }));
    }
    if (o.effectivePrice != null) {
      rows.push(kv("effective price", `${fmtNum(o.effectivePrice)} ${o.tokenOut}/${o.tokenIn}`,
        { "data-testid": "detail-effective-price", title: "after the venue and network fees" }));
    }
    return rows;
  }

  function renderDetail() {
    const panel = $("#detail");
    const o = state.orders.get(state.selected);
    if (!o) { panel.hidden = true; document.body.classList.remove("with-detail"); return; }
    panel.hidden = false;
    document.body.classList.add("with-detail");
    panel.dataset.orderId = o.orderId;
    panel.dataset.status = o.status;
    $("#d-id").textContent = shortId(o.orderId);
    $("#d-id").title = o.orderId;
    const events = [...state.detailEvents.values()].sort((a, b) => a.seq - b.seq);
    const summary = h("div", { class: "d-summary" },
      h("div", { class: "d-title" },
        badge(o.status),
        h("span", { class: `type t-${o.type}` }, o.type),
        h("b", {}, `${fmtNum(o.amountIn)} ${o.tokenIn} → ${o.tokenOut}`)),
      h("div", { class: "kvs two" },
        kv("created", fmtTime(o.createdAt, true)),
        kv("attempts", String(o.attempts ?? 0)),
        kv("slippage", o.slippageBps != null ? `${o.slippageBps} bps` : "–"),
        o.type === "limit" ? kv("limit", o.limitPrice != null ? `≥ ${fmtNum(o.limitPrice)} ${o.tokenOut}/${o.tokenIn}` : "–") : null,
        o.expiresAt ? kv("expires", fmtTime(o.expiresAt)) : null,
        o.failReason ? kv("reason", h("span", { class: "neg" }, o.failReason)) : null),
      CANCELLABLE.has(o.status)
        ? h("button", { type: "button", class: "ghost danger", "data-testid": "detail-cancel",
          onclick: () => cancelOrder(o.orderId) }, "Cancel order") : null);
    $("#d-body").replaceChildren(
      summary,
      stepper(o, events),
      h("h3", {}, "Venue quotes"),
      quoteCards(o),
      h("h3", {}, "Route & fill"),
      fillSection(o),
      h("h3", {}, "Timeline"),
      timeline(o, events),
    );
  }

  // ---------- live stream ----------
  const ws = { sock: null, gen: 0, retry: 0, timer: null };

  function setConn(stateName, label) {
    const el = $("[data-testid=ws-status]");
    el.dataset.state = stateName;
    $(".conn-label", el).textContent = label;
  }

  function connect() {
    const gen = ++ws.gen;
    clearTimeout(ws.timer);
    if (ws.sock) { try { ws.sock.close(1000); } catch { /* already closed */ } }
    const proto = location.protocol === "https:" ? "wss" : "ws";
    let url = `${proto}://${location.host}/ws/orders?userId=${encodeURIComponent(state.userId)}`;
    if (apiKey) url += `&apiKey=${encodeURIComponent(apiKey)}`;
    setConn("connecting", ws.retry ? "reconnecting…" : "connecting…");
    const sock = new WebSocket(url);
    ws.sock = sock;
    sock.onopen = () => {
      if (gen !== ws.gen) return;
      ws.retry = 0;
      setConn("open", "live");
      loadOrders(); // subscribed first, then read: nothing falls in between
      loadBalances();
    };
    sock.onmessage = (msg) => {
      if (gen !== ws.gen) return;
      let data;
      try { data = JSON.parse(msg.data); } catch { return; }
      if (data.resync) loadOrders();
      else applyEvent(data);
    };
    sock.onclose = (e) => {
      if (gen !== ws.gen) return;
      const refused = [4400, 4401, 4403].includes(e.code);
      const delay = Math.min(15000, 500 * 2 ** ws.retry) * (0.75 + Math.random() * 0.5);
      ws.retry += 1;
      setConn("closed", refused ? `refused (${e.reason || e.code})` : `offline · retry in ${Math.round(delay / 1000)} s`);
      ws.timer = setTimeout(() => { if (gen === ws.gen) connect(); }, refused ? Math.max(delay, 5000) : delay);
    };
  }

  function setUser(user) {
    state.userId = user;
    localStorage.setItem("dexecutor.userId", user);
    state.orders = new Map();
    for (const tr of state.rows.values()) tr.remove();
    state.rows = new Map();
    state.nextBefore = null;
    state.balances = null;
    renderBalances();
    closeDetail();
    renderOrders();
    ws.retry = 0;
    connect();
  }

  // ---------- order form ----------
  const form = $("#order-form");

  function formType() { return form.elements.type.value; }

  function tokenOption(t) {
    return h("option", { value: t.symbol, title: t.name || t.symbol },
      t.launched ? t.symbol : `${t.symbol} (new)`);
  }

  function fillTokenSelects() {
    const inSel = form.elements.tokenIn;
    const outSel = form.elements.tokenOut;
    const keepIn = inSel.value || "SOL";
    const keepOut = outSel.value || "USDC";
    inSel.replaceChildren(...state.tokens.filter((t) => t.launched).map(tokenOption));
    outSel.replaceChildren(...state.tokens.map(tokenOption));
    inSel.value = state.tokens.some((t) => t.symbol === keepIn && t.launched) ? keepIn : "SOL";
    outSel.value = state.tokens.some((t) => t.symbol === keepOut) ? keepOut : "USDC";
  }

  async function loadTokens() {
    try {
      const tokens = await api("/api/tokens");
      const sig = (ts) => ts.map((t) => `${t.symbol}:${t.launched}`).join(",");
      if (sig(tokens) === sig(state.tokens)) return;
      state.tokens = tokens;
      fillTokenSelects();
      updateForm();
    } catch (err) {
      toast(`Could not load tokens: ${err.message}`, "error");
    }
  }

  function updateForm() {
    const type = formType();
    form.dataset.type = type;
    $("#type-hint").textContent = TYPE_HINT[type];
    $("[data-testid=submit-order]").textContent = `Place ${type} order`;
    const outSel = form.elements.tokenOut;
    const token = state.tokens.find((t) => t.symbol === outSel.value);
    if (type === "sniper" && token && token.launched) {
      const target = state.tokens.find((t) => !t.launched);
      if (target) outSel.value = target.symbol;
    } else if (type !== "sniper" && token && !token.launched) {
      outSel.value = form.elements.tokenIn.value === "USDC" ? "SOL" : "USDC";
    }
    $("#limit-unit").textContent = `${outSel.value}/${form.elements.tokenIn.value}`;
    const launch = $("#launch");
    const sel = state.tokens.find((t) => t.symbol === outSel.value);
    launch.disabled = !sel || sel.launched;
    launch.textContent = sel && !sel.launched ? `Launch ${sel.symbol}` : "Pool is live";
    launch.title = "POST /api/mock/launch: open the token's pool on Raydium";
    schedulePreview();
  }

  function setFormMsg(text, kind) {
    const el = $("#form-msg");
    el.textContent = text;
    el.className = `form-msg ${kind || ""}`;
  }

  // Numbers go into the JSON body exactly as typed: JSON numbers, no float rounding.
  function orderJson() {
    const f = form.elements;
    const type = formType();
    const numbers = {};
    const body = { userId: state.userId, type, tokenIn: f.tokenIn.value, tokenOut: f.tokenOut.value };
    const amount = f.amountIn.value.trim();
    if (!DECIMAL_RE.test(amount)) throw new Error("Amount in must be a positive number.");
    numbers.amountIn = amount;
    const slip = f.slippageBps.value.trim();
    if (slip) {
      if (!/^\d+$/.test(slip)) throw new Error("Slippage must be a whole number of basis points.");
      numbers.slippageBps = slip;
    }
    if (type === "limit") {
      const lp = f.limitPrice.value.trim();
      if (!DECIMAL_RE.test(lp)) throw new Error("A limit order needs a limit price.");
      numbers.limitPrice = lp;
    }
    if (type !== "market") {
      const ttl = f.ttlSeconds.value.trim();
      if (ttl) {
        if (!/^\d+$/.test(ttl)) throw new Error("Time to live must be a whole number of seconds.");
        numbers.ttlSeconds = ttl;
      }
    }
    for (const k of Object.keys(numbers)) body[k] = `@@${k}@@`;
    let text = JSON.stringify(body);
    for (const [k, v] of Object.entries(numbers)) {
      const n = v.startsWith(".") ? `0${v}` : v.endsWith(".") ? v.slice(0, -1) : v;
      text = text.replace(`"@@${k}@@"`, n);
    }
    return { text, body: { ...body, ...numbers } };
  }

  async function submitOrder(e) {
    e.preventDefault();
    let payload;
    try { payload = orderJson(); } catch (err) { setFormMsg(err.message, "error"); return; }
    const button = $("[data-testid=submit-order]");
    button.disabled = true;
    setFormMsg("Placing…", "");
    try {
      const res = await api("/api/orders/execute", {
        method: "POST", body: payload.text, headers: { "idempotency-key": uuid() },
      });
      const b = payload.body;
      const now = new Date().toISOString();
      if (!state.orders.has(res.orderId)) {
        state.orders.set(res.orderId, {
          orderId: res.orderId, userId: b.userId, type: b.type, tokenIn: b.tokenIn.toUpperCase(),
          tokenOut: b.tokenOut.toUpperCase(), amountIn: Number(b.amountIn),
          slippageBps: b.slippageBps != null ? Number(b.slippageBps) : 50,
          limitPrice: b.limitPrice != null ? Number(b.limitPrice) : null,
          status: res.status, attempts: 0, createdAt: now, updatedAt: now, _seq: 0, _at: "",
        });
      }
      form.dataset.lastOrderId = res.orderId;
      setFormMsg(`Placed ${b.type} order ${shortId(res.orderId)}.`, "ok");
      renderOrders(res.orderId);
      select(res.orderId);
    } catch (err) {
      const details = err.body && Array.isArray(err.body.details)
        ? err.body.details.map((d) => d.message).filter((m) => m && m !== err.message) : [];
      setFormMsg([err.message, ...details].join(" · "), "error");
    } finally {
      button.disabled = false;
    }
  }

  // quote preview
  let previewTimer = null;
  let previewSeq = 0;
  function schedulePreview() {
    clearTimeout(previewTimer);
    previewTimer = setTimeout(renderPreview, 250);
  }
  async function renderPreview() {
    const f = form.elements;
    const el = $("#preview");
    const amount = f.amountIn.value.trim();
    const seq = ++previewSeq;
    if (!DECIMAL_RE.test(amount) || Number(amount) <= 0 || f.tokenIn.value === f.tokenOut.value) {
      el.replaceChildren();
      return;
    }
    const out = state.tokens.find((t) => t.symbol === f.tokenOut.value);
    if (out && !out.launched) {
      el.replaceChildren(h("p", { class: "muted small" },
        `${out.symbol} has no pool yet: a sniper order waits for its launch.`));
      return;
    }
    const q = new URLSearchParams({ tokenIn: f.tokenIn.value, tokenOut: f.tokenOut.value, amountIn: amount });
    if (/^\d+$/.test(f.slippageBps.value.trim())) q.set("slippageBps", f.slippageBps.value.trim());
    try {
      const quote = await api(`/api/quote?${q}`);
      if (seq !== previewSeq) return;
      const best = quote.route && quote.route.dex;
      el.replaceChildren(
        h("div", { class: "pv-venues" }, VENUES.map((v) => {
          const vq = quote.quotes[v];
          const ok = vq && !vq.error;
          return h("div", { class: `pv${v === best ? " best" : ""}` },
            h("span", { class: `venue v-${v}` }, venueName(v)),
            h("b", {}, ok ? fmtNum(vq.amountOut) : "—"),
            h("small", { class: "muted" }, ok ? `@ ${fmtNum(vq.price)}` : (vq && vq.error) || "no pool"));
        })),
        h("p", { class: "muted small" },
          best ? `Best: ${venueName(best)}, expect ${fmtNum(quote.expectedAmountOut)} ${quote.tokenOut}, min ${fmtNum(quote.minAmountOut)} at ${quote.slippageBps} bps`
            : "No venue can fill this now."),
        (quote.routePlan || []).length > 1
          ? h("p", { class: "muted small", "data-testid": "preview-split" },
            `Split: ${quote.routePlan.map((leg) => `${leg.percent}% ${leg.venue} ${leg.path.join("→")}`).join(", ")}` +
            ` (+${fmtNum(quote.splitGainBps)} bps over one venue)`)
          : "");
      if (formType() === "limit" && !f.limitPrice.value && quote.route) {
        f.limitPrice.placeholder = `now ≈ ${fmtNum(quote.route.price)}`;
      }
    } catch (err) {
      if (seq !== previewSeq) return;
      el.replaceChildren(h("p", { class: "muted small" },
        formType() === "sniper" ? "No pool yet: the order will wait for the launch." : err.message));
    }
  }

  async function launchPool() {
    const token = form.elements.tokenOut.value;
    try {
      await api("/api/mock/launch", { method: "POST", body: { token, venue: "raydium" } });
      toast(`${token} pool launched on Raydium`);
      await loadTokens();
    } catch (err) {
      toast(`Launch refused: ${err.message}`, "error");
    }
  }

  // ---------- price chart ----------
  // Polled only while the page is visible: a background tab asks the server nothing.
  const pricePoll = { timer: null };
  function startPricePolling() {
    if (pricePoll.timer !== null) return;
    pricePoll.timer = setInterval(pollPrices, PRICE_POLL_MS);
    $("#chart").dataset.polling = "on";
    pollPrices();
  }
  function stopPricePolling() {
    clearInterval(pricePoll.timer);
    pricePoll.timer = null;
    $("#chart").dataset.polling = "off";
  }

  async function pollPrices() {
    try {
      const p = await api("/api/market/prices?tokenIn=SOL&tokenOut=USDC");
      const t = tsOf(p.at) || Date.now();
      state.prices.push({ t, raydium: p.venues.raydium, meteora: p.venues.meteora, reference: p.reference });
      const cutoff = t - CHART_WINDOW_MS;
      while (state.prices.length && state.prices[0].t < cutoff) state.prices.shift();
      renderChart();
    } catch { /* keep the last picture; the next poll retries */ }
  }

  function renderChart() {
    const svg = $("#chart");
    const pts = state.prices;
    const W = Math.max(200, Math.round(svg.clientWidth || 360));
    const H = Math.max(120, Math.round(svg.clientHeight || 190));
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.dataset.points = String(pts.length);
    const pad = { l: 8, r: 52, t: 10, b: 20 };
    const keys = ["reference", "meteora", "raydium"];
    const vals = pts.flatMap((p) => keys.map((k) => p[k]).filter((v) => v != null));
    const nodes = [];
    if (!vals.length) {
      nodes.push(s("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "ch-empty" }));
      nodes[0].textContent = "waiting for prices…";
      svg.replaceChildren(...nodes);
      return;
    }
    let lo = Math.min(...vals);
    let hi = Math.max(...vals);
    const span = Math.max(hi - lo, hi * 0.002);
    lo -= span * 0.12; hi += span * 0.12;
    const t1 = pts[pts.length - 1].t;
    const t0 = Math.min(pts[0].t, t1 - 1000);
    const x = (t) => pad.l + ((t - t0) / (t1 - t0)) * (W - pad.l - pad.r);
    const y = (v) => pad.t + (1 - (v - lo) / (hi - lo)) * (H - pad.t - pad.b);
    // grid and price labels
    for (let i = 0; i <= 4; i++) {
      const v = lo + ((hi - lo) * i) / 4;
      const yy = y(v).toFixed(1);
      nodes.push(s("line", { x1: pad.l, x2: W - pad.r, y1: yy, y2: yy, class: "ch-grid" }));
      const label = s("text", { x: W - pad.r + 6, y: Number(yy) + 3.5, class: "ch-label" });
      label.textContent = v.toFixed(2);
      nodes.push(label);
    }
    // time labels
    for (const [t, anchor] of [[t0, "start"], [t1, "end"]]) {
      const label = s("text", { x: x(t), y: H - 5, "text-anchor": anchor, class: "ch-label" });
      label.textContent = fmtTime(new Date(t).toISOString());
      nodes.push(label);
    }
    for (const k of keys) {
      let d = "";
      let pen = false;
      for (const p of pts) {
        if (p[k] == null) { pen = false; continue; }
        d += `${pen ? "L" : "M"}${x(p.t).toFixed(1)},${y(p[k]).toFixed(1)}`;
        pen = true;
      }
      nodes.push(s("path", { d, class: `ch-line ch-${k}`, "data-venue": k }));
      const last = pts[pts.length - 1][k];
      if (last != null) nodes.push(s("circle", { cx: x(t1).toFixed(1), cy: y(last).toFixed(1), r: 3, class: `ch-dot ch-${k}` }));
    }
    svg.replaceChildren(...nodes);
    const last = pts[pts.length - 1];
    const said = (v) => (v != null ? Number(v).toFixed(3) : "no price");
    svg.setAttribute("aria-label", `SOL/USDC prices at ${fmtTime(new Date(t1).toISOString())}, `
      + `USDC per SOL: Raydium ${said(last.raydium)}, Meteora ${said(last.meteora)}, `
      + `reference ${said(last.reference)}`);
    for (const k of keys) $(`#lg-${k}`).textContent = last[k] != null ? Number(last[k]).toFixed(3) : "–";
    if (last.raydium != null && last.meteora != null && last.reference) {
      const spread = Math.abs(last.raydium - last.meteora) / last.reference;
      const best = last.raydium > last.meteora ? "Raydium" : "Meteora";
      $("#chart-spread").textContent = `spread ${fmtPct(spread)}`;
      $("#chart-spread").title = `${best} quotes the higher price`;
    }
  }

  // ---------- wiring ----------
  function init() {
    const userInput = $("#user-id");
    userInput.value = state.userId;
    localStorage.setItem("dexecutor.userId", state.userId);
    userInput.addEventListener("change", () => {
      const v = userInput.value.trim();
      if (!USER_RE.test(v)) {
        userInput.classList.add("invalid");
        toast("userId: 1-64 letters, digits, _ . : -", "error");
        return;
      }
      userInput.classList.remove("invalid");
      if (v !== state.userId) setUser(v);
    });
    userInput.addEventListener("keydown", (e) => { if (e.key === "Enter") userInput.blur(); });

    form.addEventListener("submit", submitOrder);
    form.addEventListener("change", (e) => {
      if (["type", "tokenIn", "tokenOut"].includes(e.target.name)) updateForm();
    });
    form.addEventListener("input", (e) => {
      if (["amountIn", "slippageBps"].includes(e.target.name)) schedulePreview();
    });
    $("#flip").addEventListener("click", () => {
      const f = form.elements;
      const a = f.tokenIn.value;
      const b = f.tokenOut.value;
      const bTok = state.tokens.find((t) => t.symbol === b);
      if (!bTok || !bTok.launched) return;
      f.tokenIn.value = b;
      f.tokenOut.value = a;
      updateForm();
    });
    $("#launch").addEventListener("click", launchPool);
    $("#more").addEventListener("click", loadOlder);
    $("#d-close").addEventListener("click", closeDetail);
    document.addEventListener("keydown", (e) => { if (e.key === "Escape" && state.selected) closeDetail(); });
    for (const r of document.querySelectorAll("input[name=filter]")) {
      r.addEventListener("change", () => { state.filter = r.value; renderOrders(); });
    }
    window.addEventListener("resize", renderChart);

    renderOrders();
    renderChart();
    loadTokens();
    connect();
    document.addEventListener("visibilitychange", () => {
      if (document.hidden) stopPricePolling();
      else startPricePolling();
    });
    if (document.hidden) stopPricePolling();
    else startPricePolling();
    setInterval(() => { if (!document.hidden) schedulePreview(); }, 5000);
    setInterval(() => { if (!document.hidden) loadTokens(); }, 15000);
  }

  init();
})();
