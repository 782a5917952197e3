"""The simulated Solana cluster as a service of its own: one market for every process.

It owns the pure market core (`market/`), the transaction ledger and the slot clock,
keeps them in PostgreSQL, and speaks a Jupiter-style quote API and a subset of
Solana's JSON-RPC. API and worker processes reach it only through `client.py`, which
implements the venue protocol the engine already uses.
"""
