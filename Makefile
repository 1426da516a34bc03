# eBoard — `make run` serves the demo, `make test` runs the whole suite. Both set up everything
# a fresh Debian 12 machine (Python 3.11, Node 20) needs first.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DATA_DIR ?= .data/demo
HOST ?= 127.0.0.1
PORT ?= 8080
CLIENT_SOURCES := $(shell find client/src client/index.html client/vite.config.js -type f 2>/dev/null)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test venv client test-deps lint typecheck e2e clean

run: venv client
	$(PY) -m server demo --data-dir $(DATA_DIR) --host $(HOST) --port $(PORT)

test: venv client test-deps lint typecheck
	$(PY) -m pytest

e2e: venv client test-deps
	$(PY) -m pytest tests/e2e

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

client: client/dist/index.html

client/node_modules/.installed: client/package.json client/package-lock.json
	cd client && npm ci --no-audit --no-fund
	touch $@

client/dist/index.html: client/node_modules/.installed $(CLIENT_SOURCES)
	cd client && npm run build

# Debian packages the tests use, installed only where missing: Chromium for the end-to-end tests
# (Playwright's own browser download does not work offline), a CJK font so zh-CN renders, and
# PostgreSQL 15 and coturn, which the tests start as throwaway servers on loopback.
DEBIAN_TEST_PACKAGES := chromium fonts-noto-cjk postgresql-15 coturn
test-deps:
	@dpkg -s $(DEBIAN_TEST_PACKAGES) >/dev/null 2>&1 || { $(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends \
		$(DEBIAN_TEST_PACKAGES); }

lint: venv
	$(VENV)/bin/ruff check server media tests
	$(VENV)/bin/mypy

typecheck: client/node_modules/.installed
	cd client && npm run typecheck

clean:
	rm -rf $(VENV) client/node_modules client/dist .data
