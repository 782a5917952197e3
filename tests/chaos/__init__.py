"""The chaos run: a randomized, bounded, reproducible fault campaign against real processes.

`python -m tests.chaos --minutes 3 --seed 42` (or `make chaos`) starts two API and two
worker processes on a PostgreSQL and a Redis of its own, each behind a TCP proxy,
drives a seeded mix of orders at them while it kills, cuts and restarts parts of the
deployment, then heals everything, lets the orders finish and checks the invariants
the engine promises. The seed decides the fault schedule and the load; the same seed
replays the same campaign. Not collected by pytest (no `test_` modules here).
"""
