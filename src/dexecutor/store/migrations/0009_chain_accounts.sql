-- The chain's accounts: each owner's native SOL (lamports, under wSOL's mint) and
-- token accounts (base units). A row of another mint is an opened token account (its
-- rent was paid). Written by the chain's journal in the same transaction as the
-- actions and transactions that changed them, so a restart finds them as they were.
CREATE TABLE chain_accounts (
    owner      text           NOT NULL,
    mint       text           NOT NULL,
    amount     numeric(20, 0) NOT NULL CHECK (amount >= 0),
    updated_at timestamptz    NOT NULL DEFAULT now(),
    PRIMARY KEY (owner, mint)
);

-- A transaction as signed: its fee payer, what it pays, how long it is valid, how it
-- lands (the slot it will land at, or null while every broadcast so far was lost; a
-- scripted fault), and once final, what getTransaction shows of it.
ALTER TABLE chain_txs
    ADD COLUMN owner      text,
    ADD COLUMN fee        bigint NOT NULL DEFAULT 0,
    ADD COLUMN last_valid bigint,
    ADD COLUMN lands_at   bigint,
    ADD COLUMN fault      text,
    ADD COLUMN meta       jsonb;
