# OCRFlux Stream: every target explains itself in `make help`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
BENCH_INSTALLED := $(VENV)/.installed-bench
LOCK := requirements.lock
JARS_STAMP := .cache/kafka/.jars-ready

.DEFAULT_GOAL := help
.PHONY: help setup system lock jars run test lint broker broker-stop clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

setup: system $(INSTALLED) $(JARS_STAMP) ## system packages when missing, .venv/ with the locked dependencies, the Kafka jars

system: ## install the system packages the tests need when missing (java, maven, redis-server, chromium, curl)
	@deploy/system_packages.sh

$(INSTALLED): pyproject.toml $(LOCK)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(LOCK) -e ".[dev]"
	@touch $@

$(BENCH_INSTALLED): $(INSTALLED)
	$(PY) -m pip install --quiet -c $(LOCK) -e ".[dev,bench]"
	@touch $@

lock: ## resolve the dependencies afresh in a scratch virtualenv and write requirements.lock
	rm -rf .cache/lock-venv
	$(PYTHON) -m venv .cache/lock-venv
	.cache/lock-venv/bin/pip install --quiet --upgrade pip
	.cache/lock-venv/bin/pip install --quiet ".[dev,bench]"
	( echo "# pip constraints: the versions the tests passed with (make lock refreshes them)"; \
	  .cache/lock-venv/bin/pip freeze --exclude-editable | grep -v '^ocrflux-stream' ) > $(LOCK)
	rm -rf .cache/lock-venv

$(JARS_STAMP): $(INSTALLED) deploy/kafka/pom.xml
	$(PY) -c "from deploy.kafka_broker import ensure_jars; print('Kafka jars in', ensure_jars())"
	@mkdir -p $(@D) && touch $@

jars: $(JARS_STAMP) ## fetch the Kafka broker jars with Maven into .cache/ (not git)

run: setup ## the pipeline end to end on examples/: broker, worker, submit, Markdown next to each file
	$(PY) -m deploy.run_examples

test: setup ## run the test suite (starts and stops its own Kafka broker unless KAFKA_BOOTSTRAP_SERVERS is set)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup ## ruff check and format check, mypy on the packages
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy ocrflux schemas streams connectors deploy

.PHONY: schemas
schemas: setup ## write the JSON Schema of every topic record to schemas/json/ (a test fails when stale)
	$(PY) -m schemas.export

broker: setup ## start a local Kafka broker in the background (stop it with `make broker-stop`)
	$(VENV)/bin/ocrflux broker start

broker-stop: ## stop the local Kafka broker that `make broker` started
	@if [ -x $(VENV)/bin/ocrflux ]; then $(VENV)/bin/ocrflux broker stop; fi

clean: broker-stop ## stop the local broker and remove caches, build output and the virtualenv
	rm -rf .cache .pytest_cache .ruff_cache .mypy_cache .hypothesis build dist *.egg-info $(VENV)
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

.PHONY: bench-local
bench-local: setup ## local engine quality: CER and s/page on generated and Debian PDF pages -> BENCHMARKS.md
	$(VENV)/bin/python -m bench.bench_local

.PHONY: bench-api
bench-api: setup ## HTTP API: 50 concurrent uploads, server peak memory -> BENCHMARKS.md
	$(VENV)/bin/python -m bench.bench_api

.PHONY: bench-stream
bench-stream: setup $(BENCH_INSTALLED) ## stream pipeline (about 20 min): saturation, documents, timeline, overhead, latency, memory, side by side -> BENCHMARKS.md
	$(PY) -m bench.suite

.PHONY: bench-quick
bench-quick: setup $(BENCH_INSTALLED) ## every stream benchmark at a small size, once: a smoke check -> .cache/bench-quick.md (not BENCHMARKS.md)
	@mkdir -p .cache
	$(PY) -m bench.suite --quick --out .cache/bench-quick.md

.PHONY: reliability
reliability: setup ## fault, outage, bad-input and API-abuse matrices on its own broker (about 20 min; not part of `make test`) -> RELIABILITY.md
	$(PY) -m bench.reliability

.PHONY: bench
bench: setup ## every benchmark, one after the other (about 25 min; not part of `make test`) -> BENCHMARKS.md
	@$(MAKE) --no-print-directory bench-stream
	@$(MAKE) --no-print-directory bench-local
	@$(MAKE) --no-print-directory bench-api
