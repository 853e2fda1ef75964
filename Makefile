# slipway's developer entry points. Every target installs what it needs itself and is
# safe to run twice (stamps are rebuilt only when their lock files change).
#
#   make demo    a real deploy of the example app on this machine
#   make test    the whole test suite (gates included: black, ruff, mypy, coverage)

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TOOLS_STAMP := tools/node_modules/.installed
WEB_UI := examples/codeframe-mini/web-ui
export PATH := $(CURDIR)/tools/node_modules/.bin:$(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: all install demo test gates lint typecheck unit coverage-modules format lock clean

all: test

install: $(STAMP) $(TOOLS_STAMP)

$(STAMP): requirements-dev.lock pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check uv==0.13.9
	$(VENV)/bin/uv pip install -q --python $(PY) -r requirements-dev.lock
	$(VENV)/bin/uv pip install -q --python $(PY) --no-deps -e .
	touch $@

# PM2 from npm into a project-local folder (never a global install).
$(TOOLS_STAMP): tools/package.json tools/package-lock.json
	cd tools && npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: install
	$(PY) scripts/demo.py

test: install gates unit coverage-modules

gates: lint typecheck

lint: $(STAMP)
	$(VENV)/bin/black --check --quiet src tests examples benchmarks scripts conftest.py
	$(VENV)/bin/ruff check src tests examples benchmarks scripts conftest.py

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# Two workers (TEST_WORKERS=1 for one): each test module runs whole on one worker, so
# a module's deployed fixtures stay shared; modules share no ports or PM2 homes.
TEST_WORKERS ?= 2
unit: install
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadfile --durations=15 \
		--cov --cov-report=term --cov-report=xml -p no:cacheprovider

# The deploy, rollback and backup modules must reach 95% (the design's "critical paths").
coverage-modules: $(STAMP)
	$(PY) scripts/check_module_coverage.py coverage.xml

format: $(STAMP)
	$(VENV)/bin/black src tests examples benchmarks scripts
	$(VENV)/bin/ruff check --fix src tests examples benchmarks scripts

lock: $(STAMP)
	$(VENV)/bin/uv pip compile -q pyproject.toml --extra dev --python-version 3.11 -o requirements-dev.lock
	cd tools && npm install --package-lock-only --no-audit --no-fund

clean:
	-test -d .demo/srv/pm2 && PM2_HOME=.demo/srv/pm2 tools/node_modules/.bin/pm2 kill >/dev/null
	rm -rf $(VENV) tools/node_modules .demo coverage.xml .coverage
