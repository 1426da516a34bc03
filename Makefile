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

.PHONY: run test venv client run-deps test-deps lint typecheck e2e clean

run: venv client run-deps
	$(PY) -m server demo --data-dir $(DATA_DIR) --host $(HOST) --port $(PORT)

test: venv client run-deps test-deps lint typecheck
	$(PY) -m pytest

e2e: venv client run-deps test-deps
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

# Debian packages the server needs, installed only where missing: the Pango and HarfBuzz
# libraries WeasyPrint loads to print agreed plans as PDF, and a CJK font so zh-CN renders in
# those PDFs (and in the end-to-end tests' Chromium).
DEBIAN_RUN_PACKAGES := libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-noto-cjk
run-deps:
	@dpkg -s $(DEBIAN_RUN_PACKAGES) >/dev/null 2>&1 || { $(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends \
		$(DEBIAN_RUN_PACKAGES); }

# Debian packages the tests use, installed only where missing: Chromium for the end-to-end tests
# (Playwright's own browser download does not work offline), PostgreSQL 15 and coturn, which the
# tests start as throwaway servers on loopback, and poppler-utils (pdftotext, pdftoppm, pdfinfo)
# to read the PDF exports back. After run-deps: one apt-get at a time, even under make -j.
DEBIAN_TEST_PACKAGES := chromium postgresql-15 coturn orthanc orthanc-dicomweb poppler-utils
test-deps: run-deps
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

# The SFU benchmark (tests/bench/README.md): the same board load through eBoard's SFU, Janus
# 1.1.2's VideoRoom and aiortc's transcoding relay; prints a table and writes
# tests/bench/results/sfu.json. Runs as root in a private network namespace (veth pair), with
# Debian's janus installed where missing. `make bench-sfu BENCH_ARGS=--quick` for a smoke run.
BENCH_PACKAGES := janus iproute2
BENCH_ARGS ?=
.PHONY: bench-sfu
bench-sfu: venv
	@dpkg -s $(BENCH_PACKAGES) >/dev/null 2>&1 || { $(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends \
		$(BENCH_PACKAGES); }
	$(SUDO) $(PY) -m tests.bench.bench_sfu $(BENCH_ARGS)

# The link benchmark (tests/bench/README.md, "Link benchmark"): one remote participant, real
# headless Chromium, across an emulated trans-Pacific link (125 ms one way, 1 % loss, 2 Mbit/s
# each way, a 3 s 30 % loss burst mid-run; a user-space TUN relay, this kernel has no netem)
# from the SFU and N-1 aiortc locals: eBoard (its room page, demo data) and Janus's VideoRoom,
# link on and off side by side; the demo CT fetched over the link meanwhile. Prints a table
# and writes tests/bench/results/link.json. Runs as root in private network namespaces.
# `make bench-link BENCH_ARGS=--quick` for a smoke run (N = 4, small CT).
BENCH_LINK_PACKAGES := janus iproute2 util-linux chromium
.PHONY: bench-link
bench-link: venv client
	@dpkg -s $(BENCH_LINK_PACKAGES) >/dev/null 2>&1 || { $(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends \
		$(BENCH_LINK_PACKAGES); }
	$(SUDO) $(PY) -m tests.bench.bench_link $(BENCH_ARGS)

# The imaging benchmark: series delivery of the demo CT (120 × 512², native and JPEG-LS),
# metadata + every frame with 6 requests in flight, from our /dicom-web/ (`python -m server
# serve`) and from Orthanc with its DICOMweb plugin, side by side; prints a table and writes
# tests/bench/results/imaging.json. `make bench-imaging BENCH_ARGS=--quick` for a smoke run.
BENCH_IMAGING_PACKAGES := orthanc orthanc-dicomweb
.PHONY: bench-imaging bench
bench-imaging: venv
	@dpkg -s $(BENCH_IMAGING_PACKAGES) >/dev/null 2>&1 || { $(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends \
		$(BENCH_IMAGING_PACKAGES); }
	$(PY) -m tests.bench.bench_imaging $(BENCH_ARGS)

# The view-sync benchmark: a presenter's 60 Hz view patches (and pointer moves) to 15 followers,
# real socket.io clients, through eBoard (`python -m server demo`) and a bare python-socketio
# relay, side by side; prints a table and writes tests/bench/results/sync.json.
# `make bench-sync BENCH_ARGS=--quick` for a smoke run, `BENCH_ARGS=--profile` to add py-spy.
.PHONY: bench-sync
bench-sync: venv
	$(PY) -m tests.bench.bench_sync $(BENCH_ARGS)

# The notes benchmark: 15 real socket.io clients each make 100 edits at once to one case's
# consensus note through eBoard (`python -m server demo`), and 1 client alone as the baseline;
# convergence after the last edit (goal ≤ 200 ms) and nothing lost. Prints a table and writes
# tests/bench/results/notes.json; fails only if an edit was lost or a replica differs.
.PHONY: bench-notes
bench-notes: venv
	$(PY) -m tests.bench.bench_notes $(BENCH_ARGS)

# The export benchmark: 1,000 synthetic finalized notes bulk-exported as signed JSON, PDF, FHIR
# and HL7 through eBoard (`python -m server serve`): notes/s per format, and the socket.io round
# trip during each export against idle (the PDF renderer must not block the event loop). Prints
# a table and writes tests/bench/results/export.json; fails if a plan failed or a count is wrong.
# About 40 minutes; `BENCH_ARGS=--hl7-notes 300` takes 30, `BENCH_ARGS=--quick` is a smoke run.
.PHONY: bench-export
bench-export: venv
	$(PY) -m tests.bench.bench_export $(BENCH_ARGS)

# The upload memory benchmark (issue #13): peak RSS of `python -m server serve` (imaging limit
# 512 MiB) while it refuses a 1 GiB upload (declared and streamed) and hostile zips (×1000,
# lying sizes, one at the edge of the limits), against idle; goal under 300 MB above idle.
# Prints a table and writes tests/bench/results/upload_rss.json; fails past the goal. ~30 s.
.PHONY: bench-upload
bench-upload: venv
	$(PY) -m tests.bench.bench_upload_rss $(BENCH_ARGS)

# The fuzzers at full length (tests/fuzz): Schemathesis sends ≥ 10,000 inputs to every REST
# operation with each demo role's token, and ≥ 5,000 generated socket.io events go to a live
# session while a bystander times its round trip; prints a table and writes
# tests/fuzz/results/fuzz.json; fails on any 5xx, undeclared answer, unanswered event or
# logged error. About 20 minutes. `make fuzz FUZZ_ARGS="--rest-inputs 2000 --events 500"`.
FUZZ_ARGS ?=
.PHONY: fuzz
fuzz: venv
	$(PY) -m tests.fuzz.run $(FUZZ_ARGS)

# Every benchmark, one after the other (BENCH_ARGS goes to each; --quick is understood by all).
bench: bench-sfu bench-imaging bench-sync bench-notes bench-export bench-upload bench-link
