-- Orders and their append-only event history.
CREATE TABLE orders (
    id                   uuid PRIMARY KEY,
    user_id              text        NOT NULL,
    type                 text        NOT NULL,
    token_in             text        NOT NULL,
    token_out            text        NOT NULL,
    amount_in            numeric     NOT NULL CHECK (amount_in > 0),
    slippage_bps         integer     NOT NULL CHECK (slippage_bps BETWEEN 0 AND 5000),
    limit_price          numeric,
    expires_at           timestamptz,
    quote_id             text,
    quote_min_amount_out numeric,
    quote_expires_at     timestamptz,
    status               text        NOT NULL,
    seq                  integer     NOT NULL,
    attempts             integer     NOT NULL DEFAULT 0,
    dex_used             text,
    quotes               jsonb,
    expected_amount_out  numeric,
    min_amount_out       numeric,
    tx_hash              text,
    executed_price       numeric,
    amount_out           numeric,
    fail_reason          text,
    idempotency_key      text,
    request_hash         text,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL
);

-- History, newest first, per user (and the keyset cursor `before`).
CREATE INDEX orders_user_created ON orders (user_id, created_at DESC, id DESC);
-- The reconciler's and the blotter's "what is still running".
CREATE INDEX orders_unfinished ON orders (status)
    WHERE status NOT IN ('confirmed', 'failed', 'cancelled', 'expired');
-- Idempotent submission: one order per (user, key), across restarts.
CREATE UNIQUE INDEX orders_idempotency ON orders (user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE order_events (
    order_id uuid        NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    seq      integer     NOT NULL,
    status   text        NOT NULL,
    attempt  integer     NOT NULL,
    at       timestamptz NOT NULL,
    data     jsonb       NOT NULL DEFAULT '{}',
    PRIMARY KEY (order_id, seq)
);

-- The simulated chain: every transaction a mock venue accepted, keyed by order so a
-- second submission of the same order finds the first instead of swapping twice.
CREATE TABLE mock_ledger (
    tx_hash        text PRIMARY KEY,
    venue          text        NOT NULL,
    order_id       uuid        NOT NULL,
    attempt        integer     NOT NULL,
    token_in       text        NOT NULL,
    token_out      text        NOT NULL,
    amount_in      numeric     NOT NULL,
    min_amount_out numeric     NOT NULL,
    status         text        NOT NULL,  -- pending | landed | dropped | expired | reverted
    reason         text,
    amount_out     numeric,
    executed_price numeric,
    submitted_at   timestamptz NOT NULL,
    lands_at       timestamptz NOT NULL,
    finalized_at   timestamptz
);
-- At most one live (pending or landed) transaction per order, whatever the venue.
CREATE UNIQUE INDEX mock_ledger_live ON mock_ledger (order_id)
    WHERE status IN ('pending', 'landed');
