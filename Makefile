# folderseal: the two commands of the quick start, and the checks behind them.
#   make run    the daemon on ./demo with the embedded local signer
#   make test   the whole suite (unit, integration, acceptance) with a sample of the
#               fleet scenarios, plus ruff and mypy
#   make fleet-test   the whole fleet matrix (tests/fleet: three nodes, one database)
#   make systemd-test   the README's service install, proven in a booted Debian (root)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Debian packages the tests call: pdfsig (poppler-utils) and openssl check signatures
# with tools folderseal did not write; setpriv runs permission cases unprivileged;
# bindfs makes the FUSE "share" of the reliability campaign (bench/torture.py), strace
# records the calls its durability audit checks; systemd-analyze rates the unit file's
# hardening; chromium and chromedriver load the status page in a real browser;
# debootstrap and systemd-nspawn build and boot the Debian of the service-install proof;
# the fleet tests (tests/fleet) put one node's wall clock off with libfaketime (faketime)
# and cut a node off from the database with an nftables drop (nftables).
NSPAWN_TOOLS := debootstrap:debootstrap systemd-nspawn:systemd-container
TEST_TOOLS := pdfsig:poppler-utils openssl:openssl setpriv:util-linux bindfs:bindfs \
	strace:strace systemd-analyze:systemd chromium:chromium chromedriver:chromium-driver \
	faketime:faketime nft:nftables $(NSPAWN_TOOLS)

.PHONY: run test fleet-test lint bench fleet-bench torture systemd-test system-deps clean

$(VENV)/.installed-run: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "folderseal needs Python 3.11 or newer" >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed-run
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

system-deps:
	@missing=""; for pair in $(TEST_TOOLS); do \
	  command -v "$${pair%%:*}" >/dev/null || missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

run: $(VENV)/.installed-run
	@test -d demo || $(VENV)/bin/folderseal init ./demo
	@echo "Drop files into ./demo/inbox; signed results appear in ./demo/outbox. Ctrl-C stops."
	exec $(VENV)/bin/folderseal run -c ./demo/config.toml

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check folderseal tests bench
	$(VENV)/bin/mypy

# Two test processes: most tests wait on a daemon subprocess, so two at a time keep both
# cores busy (about 9 minutes instead of 17 on 2 cores).
# The fleet matrix (marker `fleet`) takes minutes: `make test` runs its sample alone.
test: $(VENV)/.installed-test system-deps lint
	$(PY) -m pytest -q -n 2 --dist worksteal -m "not fleet or fleet_sample"

# Every fleet scenario (three `folderseal run` nodes on a PostgreSQL cluster of each
# test's own): kills at each crash point, pauses past the lease, the database restarted,
# stopped and cut off, clocks off by 300 s.
fleet-test: $(VENV)/.installed-test system-deps
	$(PY) -m pytest -q -n 2 --dist worksteal -m fleet tests/fleet

# Each script prints its figures beside their baselines and targets and exits 1 when a
# target is missed; every script runs, and the target fails if any missed.
bench: $(VENV)/.installed-test system-deps
	status=0; \
	$(PY) bench/throughput.py || status=1; \
	$(PY) bench/polling.py || status=1; \
	$(PY) bench/isolation.py || status=1; \
	$(PY) bench/backlog.py || status=1; \
	$(PY) bench/memory.py || status=1; \
	exit $$status

# 1, 2 and 3 nodes against the SEAL emulator at 200 ms a call, a takeover after kill -9,
# and statements per file, on a PostgreSQL cluster of its own (a few minutes).
fleet-bench: $(VENV)/.installed-test system-deps
	$(PY) bench/fleet.py

torture: $(VENV)/.installed-test system-deps
	$(PY) bench/torture.py --cycles 200

# Boots a Debian bookworm with systemd-nspawn (its rootfs cached in
# /var/cache/folderseal/nspawn), installs folderseal as the README's service block says,
# and checks the service: about 2 minutes warm, 4 cold. Root only.
systemd-test: $(VENV)/.installed-test
	@$(MAKE) --no-print-directory system-deps TEST_TOOLS="$(NSPAWN_TOOLS)"
	$(PY) tests/system/nspawn.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
