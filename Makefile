# The front door: `make run` and `make test` set everything up from a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-faults test-unit lint fmt bench clean chromium wrk chaos chaos-short

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/dexecutor up

# The blotter's browser test drives Debian's chromium (never a downloaded browser).
# Installed when missing and we are root; otherwise that one test skips with a reason.
chromium:
	@command -v chromium >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1 \
		|| (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| echo "chromium could not be installed: the browser test will skip"

test: $(STAMP) chromium
	$(BIN)/pytest -q -m "not faults"

test-faults: $(STAMP)
	$(BIN)/pytest -q -m faults

# The chaos run (tests/chaos): two API and two worker processes on a PostgreSQL and a
# Redis of its own, a seeded load, and faults drawn from the seed every few seconds.
# CHAOS_SEED (default: random, printed) replays a run; CHAOS_MINUTES is the load's length.
CHAOS_MINUTES ?= 3
CHAOS_SEED ?=
chaos: $(STAMP)
	CHAOS_SEED=$(CHAOS_SEED) $(BIN)/python -m tests.chaos --minutes $(CHAOS_MINUTES)

# The short variant CI runs after the fault tests (about two minutes in all).
chaos-short: $(STAMP)
	CHAOS_SEED=$(CHAOS_SEED) $(BIN)/python -m tests.chaos --minutes 1.5

test-unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

lint: $(STAMP)
	$(BIN)/ruff check src tests scripts bench
	$(BIN)/ruff format --check src tests scripts bench
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format src tests scripts
	$(BIN)/ruff check --fix src tests scripts

# The submission scenario drives wrk (Debian's package), installed like chromium.
wrk:
	@command -v wrk >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1 \
		|| (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null) \
		|| echo "wrk could not be installed: the submission scenario will be skipped"

bench: $(STAMP) wrk
	$(BIN)/dexecutor bench
	$(BIN)/python bench/waiting_orders.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
