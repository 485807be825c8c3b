# Two commands set everything up on a fresh machine:
#   make demo   - venv + packages, trains the demo model if missing, migrates, runs daphne on 127.0.0.1:8000
#   make test   - venv + packages (+ Chromium for the browser tests), then the whole test suite
# Other targets: make lint (ruff + mypy), make dist (sdist + wheel, checked with twine),
# make test-django-latest (the suite on the newest Django, in a second venv), make bench,
# make soak, make clean.

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
# The second venv: the newest Django (requirements/django-latest.txt) on Python >= 3.12.
VENV_LATEST ?= .venv-django-latest
STAMP_LATEST := $(VENV_LATEST)/.installed
EXTRAS_LATEST ?= tensorflow-cpu,channels,test

.PHONY: venv venv-django-latest engine test test-django-latest lint dist demo bench soak browser redis clean

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

venv-django-latest: $(STAMP_LATEST)

$(STAMP_LATEST): setup.cfg pyproject.toml requirements/constraints.txt requirements/django-latest.txt
	test -x $(VENV_LATEST)/bin/python || "$${PYTHON_LATEST:-$$(.ci/python-for-django-latest)}" -m venv $(VENV_LATEST)
	{ grep -v '^Django==' requirements/constraints.txt; cat requirements/django-latest.txt; } > $(VENV_LATEST)/constraints.txt
	$(VENV_LATEST)/bin/python -m pip install --quiet --upgrade pip
	$(VENV_LATEST)/bin/python -m pip install --quiet -c $(VENV_LATEST)/constraints.txt -e ".[$(EXTRAS_LATEST)]"
	touch $(STAMP_LATEST)

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

# The whole suite again on the newest Django release and a newer Python (CI runs both).
test-django-latest: venv-django-latest browser redis engine
	$(VENV_LATEST)/bin/python -c 'import django, sys; print(f"Django {django.__version__} on Python {sys.version.split()[0]}")'
	$(VENV_LATEST)/bin/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check tfbatch_django tests bench demo_project
	$(BIN)/ruff format --check tfbatch_django tests bench demo_project
	$(BIN)/mypy tfbatch_django bench demo_project

# The package as an index would get it: both archives built from a clean tree, and their
# metadata (README as the long description, URLs, classifiers) checked with twine.
dist: venv
	rm -rf dist && mkdir dist
	$(BIN)/python -m build --outdir dist . >dist/build.log 2>&1 || { cat dist/build.log; exit 1; }
	$(BIN)/twine check --strict dist/*.whl dist/*.tar.gz

demo: venv
	$(BIN)/python manage.py tfbatch_demo_model --if-missing
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py tfbatch_warmup
	$(BIN)/daphne -b $(HOST) -p $(PORT) demo_project.asgi:application

bench: venv
	$(BIN)/python bench/bench_serving.py
	$(BIN)/python bench/bench_batcher.py
	$(BIN)/python bench/bench_protocols.py

# Minutes at twice the server's capacity, every request accounted for (SOAK_ARGS="--minutes 2").
soak: venv
	$(BIN)/python bench/bench_soak.py $(SOAK_ARGS)

clean:
	rm -rf $(VENV) $(VENV_LATEST) $(ENGINE_VENV) var build dist *.egg-info
