# The product's front door. `make run` brings everything up on embedded defaults;
# `make test` runs the whole suite (fast group, then the services group).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)

# The services group runs against the machine's PostgreSQL and Redis.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/scalper
TEST_REDIS_URL ?= redis://127.0.0.1:6379/9

.PHONY: install run test test-fast test-services lint bench

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) manage.py run_stack

test: test-fast test-services

test-fast: install
	$(PY) -m pytest -m "not services"

test-services: install
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) \
	DJANGO_SECRET_KEY=test-only-secret-not-for-production \
	$(PY) -m pytest -m services --ds=scalper_site.settings

lint: install
	$(VENV)/bin/ruff check .

bench: install
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done
