-- Custodial wallets: one ed25519 keypair per user, its secret encrypted (AES-GCM with
-- WALLET_KEY; nonce and tag stored with it). `funded`: the development faucet has
-- given the wallet its starting balance (set in the same transaction that gave it).
CREATE TABLE wallets (
    user_id    text PRIMARY KEY,
    pubkey     text        NOT NULL UNIQUE,
    secret     bytea       NOT NULL,
    funded     boolean     NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Reservations: what a user's waiting (limit and sniper) orders hold back, per input
-- token. Read before every swap; the partial index keeps it to the waiting few.
CREATE INDEX orders_waiting_by_user ON orders (user_id, token_in) INCLUDE (amount_in)
    WHERE status = 'waiting';
