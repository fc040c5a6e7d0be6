# Developer entry points. The venv is rebuilt only when pyproject.toml or the lock file changes (stamp file):
# every dependency is installed at the exact version of requirements.lock, then baton itself without deps.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: chromium venv lock stack-up stack-down stack-status test test-long lint demo bench bench-restart sim

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

# Re-resolve the dependencies of pyproject.toml (with the dev extra) in a scratch venv and pin them all.
lock:
	rm -rf .baton/lock-venv && $(PYTHON) -m venv .baton/lock-venv
	.baton/lock-venv/bin/pip install --quiet '.[dev]'
	.baton/lock-venv/bin/pip freeze --exclude baton > requirements.lock
	rm -rf .baton/lock-venv

stack-up: venv
	$(BIN)/baton stack up

stack-down: venv
	$(BIN)/baton stack down

stack-status: venv
	$(BIN)/baton stack status

# The pytest session fixture starts (and afterwards stops) whatever of the stack is missing.
# The browser tests drive Debian's Chromium (never a browser download): installed once, as root, when missing.
chromium:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq chromium chromium-driver)

test: venv chromium
	$(BIN)/pytest -q

# The tests marked `long` (minutes each: broker kills and bounces on a three-broker cluster, benches under chaos),
# left out of `make test` to keep it under 15 minutes. Same real stack, started and stopped the same way.
test-long: venv
	$(BIN)/pytest -q -m long

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy baton schemas services

demo: venv
	$(BIN)/baton demo

# A default bench (2,000 orders, auto-workers), recorded as `current` in docs/benchmarks.md (figures, command,
# machine, date). The page is rewritten even when an invariant broke; make then fails with the bench's status.
BENCH_ORDERS ?= 2000
BENCH_OUT := .baton/bench/make
bench: venv
	rm -rf $(BENCH_OUT)
	$(BIN)/baton bench --orders $(BENCH_ORDERS) --out $(BENCH_OUT); status=$$?; \
	  $(BIN)/python -m baton.bench.docs --record $(BENCH_OUT)/bench.json --label current && exit $$status

# Issue 9's restart figure: 100,000 orders placed without workers (they stay in every service's state), then the
# orchestrator, the inventory and one WMS node each killed -9 and restarted, timed back to processing on Kafka.
# Recorded under docs/benchmarks/restart/ and shown in docs/benchmarks.md's restart section.
RESTART_ORDERS ?= 100000
RESTART_OUT := .baton/bench/make-restart
bench-restart: venv
	rm -rf $(RESTART_OUT)
	$(BIN)/baton bench --restart-after $(RESTART_ORDERS) --out $(RESTART_OUT); status=$$?; \
	  $(BIN)/python -m baton.bench.docs --record-restart $(RESTART_OUT)/restart.json && exit $$status

# Issue 10's deterministic simulator: SEEDS seeds of the whole network in one process, under simulated time, every
# invariant checked after each commit; reports seeds/s, and each failing seed shrunk to a replayable trace.
# No Kafka needed. Long hunts: make sim SEEDS=100000 (FROM=... for another range).
SEEDS ?= 2000
FROM ?= 0
sim: venv
	$(BIN)/baton sim --seeds $(SEEDS) --from-seed $(FROM)
