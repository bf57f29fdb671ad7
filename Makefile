# Steward: `make run` for the demo, `make test` for the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The test suite runs against the real services of this machine.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/steward
TEST_BROKER_URL ?= redis://127.0.0.1:6379/5
# Two test processes (pytest-xdist), each with a test database and Redis databases of its own
# (tests/parallel.py): Redis databases 5 and 6.
PYTEST_ARGS ?= -p tests.parallel -n 2 --dist loadfile

# The LiteLLM proxy (for the gateway plugin's tests and bench) pins many packages of its own: it
# gets a virtualenv of its own, with the plugin installed as a router author installs it.
LITELLM_VENV := .venv-litellm
LITELLM_VERSION := 1.108.7
LITELLM_STAMP := $(LITELLM_VENV)/.litellm-$(LITELLM_VERSION)

.PHONY: run test install lint migrate seed static services-check chromium clean bench litellm

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

$(LITELLM_STAMP):
	$(PYTHON) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LITELLM_VENV)/bin/python -m pip install --quiet "litellm[proxy]==$(LITELLM_VERSION)"
	touch $@

$(LITELLM_VENV)/.plugin: $(LITELLM_STAMP) steward_client/pyproject.toml $(wildcard steward_client/*.py)
	$(LITELLM_VENV)/bin/python -m pip install --quiet "./steward_client[litellm]"
	$(LITELLM_VENV)/bin/python -m pip install --quiet --no-deps --force-reinstall ./steward_client
	rm -rf steward_client/build steward_client/*.egg-info
	touch $@

litellm: $(LITELLM_VENV)/.plugin

migrate: install
	$(BIN)/python manage.py migrate --noinput

# Fingerprinted, compressed copies of the static files under var/static (steward/storage.py).
static: install
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0

seed: migrate
	$(BIN)/python manage.py seed_demo
	$(BIN)/python -m demo.traffic

# The demo on SQLite and the filesystem broker (nothing to set up); Ctrl-C stops everything.
run: seed static
	$(BIN)/python manage.py serve

# Chromium comes from Debian; install it when missing and we are root.
chromium:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    echo "Installing Chromium (apt-get)…"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "Chromium is missing; browser tests will be skipped (run as root or: sudo apt-get install chromium)"; \
	  fi; \
	fi

services-check: install
	@DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) $(BIN)/python -m steward.services_check

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DATABASE_URL=$(TEST_DATABASE_URL) $(BIN)/python manage.py makemigrations --check --dry-run

test: install litellm chromium services-check lint static
	DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) \
	  $(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install litellm
	DATABASE_URL=$(TEST_DATABASE_URL) $(BIN)/python bench/registry_list.py
	$(BIN)/python bench/litellm_guard.py

clean:
	rm -rf $(VENV) $(LITELLM_VENV) var .pytest_cache .ruff_cache
