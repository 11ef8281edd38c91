# The product's front door. `make run` brings everything up on embedded defaults;
# `make test` runs the whole suite (fast group, slow group, then the services group);
# `make lint` runs ruff and mypy.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# One stamp per requirements set, named after the checksum of its files: an edit reinstalls.
RUN_STAMP := $(VENV)/.installed-run-$(shell cat requirements.txt | cksum | cut -d' ' -f1)
DEV_STAMP := $(VENV)/.installed-dev-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)

# The services group runs against the machine's PostgreSQL and Redis.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/scalper
TEST_REDIS_URL ?= redis://127.0.0.1:6379/9

.PHONY: install install-dev run test test-fast test-slow test-services lint bench

# What the product runs with, and nothing else.
$(RUN_STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-run-*
	touch $(RUN_STAMP)

# The product's requirements plus the test and lint tools; it satisfies the run stamp too.
$(DEV_STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $(DEV_STAMP) $(RUN_STAMP)

install: $(RUN_STAMP)

install-dev: $(DEV_STAMP)

run: install
	$(PY) manage.py run_stack

test: test-fast test-slow test-services

# No processes, no waiting: the group to run after every change.
test-fast: install-dev
	$(PY) -m pytest -m "not services and not slow"

# Real processes (simulator, child interpreters, redis-server) and seconds of real time.
test-slow: install-dev
	$(PY) -m pytest -m "slow and not services"

test-services: install-dev
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) \
	DJANGO_SECRET_KEY=test-only-secret-not-for-production \
	$(PY) -m pytest -m services --ds=scalper_site.settings

# Both tools always run, so one pass shows every finding; either failing fails the target.
lint: install-dev
	@status=0; \
	$(VENV)/bin/ruff check . || status=1; \
	$(VENV)/bin/mypy || status=1; \
	exit $$status

bench: install
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done
