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

.PHONY: run test venv client chromium lint typecheck e2e clean

run: venv client
	$(PY) -m server demo --data-dir $(DATA_DIR) --host $(HOST) --port $(PORT)

test: venv client chromium lint typecheck
	$(PY) -m pytest

e2e: venv client chromium
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

# Debian's Chromium for the end-to-end tests (Playwright's own browser download does not work
# offline); installed only where missing.
chromium:
	@dpkg -s chromium fonts-noto-cjk >/dev/null 2>&1 || { $(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium fonts-noto-cjk; }

lint: venv
	$(VENV)/bin/ruff check server media tests
	$(VENV)/bin/mypy

typecheck: client/node_modules/.installed
	cd client && npm run typecheck

clean:
	rm -rf $(VENV) client/node_modules client/dist .data
