# Two commands set everything up on a fresh machine:
#   make demo   - venv + packages, trains the demo model if missing, migrates, runs daphne on 127.0.0.1:8000
#   make test   - venv + packages (+ Chromium for the browser tests), then the whole test suite
# Other targets: make lint (ruff + mypy), make bench, make clean.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= tensorflow-cpu,channels,test,dev
STAMP := $(VENV)/.installed
# KServe's model server, which the remote-runner tests start, in a venv of its own.
ENGINE_VENV ?= .venv-engine
ENGINE_STAMP := $(ENGINE_VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: venv engine test lint demo bench browser redis clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

engine: $(ENGINE_STAMP)

$(ENGINE_STAMP): requirements/engine.txt
	test -x $(ENGINE_VENV)/bin/python || $(PYTHON) -m venv $(ENGINE_VENV)
	$(ENGINE_VENV)/bin/python -m pip install --quiet -r requirements/engine.txt
	touch $(ENGINE_STAMP)

# Debian's Chromium drives the browser tests (no browser download at test time).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

# Debian's Redis serves the channel layer of the worker tests (started and stopped by them).
redis:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server >/dev/null; }

test: venv browser redis engine
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check tfbatch_django tests bench demo_project
	$(BIN)/ruff format --check tfbatch_django tests bench demo_project
	$(BIN)/mypy tfbatch_django bench demo_project

demo: venv
	$(BIN)/python manage.py tfbatch_demo_model --if-missing
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py tfbatch_warmup
	$(BIN)/daphne -b $(HOST) -p $(PORT) demo_project.asgi:application

bench: venv
	$(BIN)/python bench/bench_serving.py
	$(BIN)/python bench/bench_batcher.py
	$(BIN)/python bench/bench_protocols.py

clean:
	rm -rf $(VENV) $(ENGINE_VENV) var build *.egg-info
