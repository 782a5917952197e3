-- The chain service's state: its genesis (seed, preset), its slot, every action that
-- changed its market (replayed on a fresh market at start-up: the core is
-- deterministic), and its transaction ledger. The old per-process mock ledger goes.
CREATE TABLE chain_state (
    id         integer PRIMARY KEY CHECK (id = 1),
    seed       bigint      NOT NULL,
    preset     text        NOT NULL,
    genesis    text        NOT NULL,
    slot       bigint      NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Fills, launches and price moves, in the order the market saw them, each with the
-- market time it happened at.
CREATE TABLE chain_actions (
    id         bigint PRIMARY KEY,
    slot       bigint           NOT NULL,
    at         double precision NOT NULL,
    kind       text             NOT NULL,
    data       jsonb            NOT NULL,
    created_at timestamptz      NOT NULL DEFAULT now()
);

CREATE TABLE chain_txs (
    signature      text PRIMARY KEY,
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
    received_slot  bigint      NOT NULL,
    slot           bigint,                -- where it landed (or failed)
    lands_in_ms    integer     NOT NULL,
    payload        text        NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    finalized_at   timestamptz
);
CREATE INDEX chain_txs_order ON chain_txs (order_id);
CREATE INDEX chain_txs_pending ON chain_txs (status) WHERE status = 'pending';

-- The engine's write-ahead record of each swap it sends: written, fenced by the
-- order's sequence number, before the transaction leaves; a resumed order sends the
-- same recorded bytes again (same signature), never a new transaction.
CREATE TABLE order_txs (
    signature  text PRIMARY KEY,
    order_id   uuid        NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    attempt    integer     NOT NULL,
    venue      text        NOT NULL,
    payload    text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (order_id, attempt)
);

DROP TABLE mock_ledger;
