# Infra-Core — `make install`, then `.venv/bin/fsctl serve` (or `make run`); `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install test lint bench run ui test-ui accel clean docs

install: $(BIN)/fsctl ui

# `pip install -e .` also compiles the gate's per-request modules (setup.py, gate/accel.py): without Cython
# or a C compiler it warns and the gate runs as pure Python, unless INFRACORE_REQUIRE_ACCEL is set (CI sets
# it: a build that breaks must fail, not fall back).
$(BIN)/fsctl: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q -e '.[dev,accel]'
	@$(BIN)/python -c 'from gate import accel; r = accel.reason(); print("gate: " + ("compiled" if r is None else f"pure Python, {r}"))'
	@touch $@

# Rebuild the compiled modules in place after editing them (only what changed is recompiled; until then the
# gate runs as Python, with a warning). `make test`, `make bench` and `make run` do it first.
accel: $(BIN)/fsctl
	$(BIN)/python setup.py -q build_ext --inplace

# The console: ui/openapi.json is regenerated from the routes (no server needed), the typed client from it,
# and `tsc` fails the build when an API change breaks a page; served from ui/dist by `fsctl serve`.
# UI=0 skips it (the API works without it; / then says how to build it).
UI ?= 1
ui: $(BIN)/fsctl
	@if [ "$(UI)" = 1 ] && [ -f ui/package.json ]; then \
	  command -v npm >/dev/null || { echo "make ui: npm not found; install Node.js >= 20 and npm" \
	    "(Debian: apt-get install nodejs npm), or skip the console with UI=0" >&2; exit 1; }; \
	  $(BIN)/python -m fsctl.openapi_dump ui/openapi.json && \
	  cd ui && npm ci --no-audit --no-fund && npm run build; fi

# The UI's component tests (Vitest) and browser tests (Playwright + Debian's chromium, tests/ui/).
test-ui: ui
	cd ui && npm test
	$(BIN)/python -m pytest -q tests/ui

# Then the gate's tests once more as pure Python (INFRACORE_PURE=1): the fallback that runs wherever
# the accelerator cannot be built keeps passing them. PURE_TESTS= skips that second pass.
PURE_TESTS ?= tests/gate
test: $(BIN)/fsctl accel
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)
	@if [ -n "$(PURE_TESTS)" ]; then echo "== the gate as pure Python"; \
	  INFRACORE_PURE=1 $(BIN)/python -m pytest -q $(PYTEST_ARGS) $(PURE_TESTS); fi

# The reference pages in docs/reference/ from the code (settings, CLI parsers, OpenAPI); a test fails when stale.
docs: $(BIN)/fsctl
	$(BIN)/python -m fsctl.refdocs

# Style, formatting and types ([tool.ruff], [tool.mypy] in pyproject.toml); CI runs it before the tests.
lint: $(BIN)/fsctl
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Every benchmark in bench/ (each prints its figures beside a reference measured in the same run).
bench: $(BIN)/fsctl accel
	@set -e; for f in bench/bench_*.py; do [ -e "$$f" ] || continue; echo "== $$f"; $(BIN)/python "$$f"; done

# The first hour on a fresh clone (install time, serve -> verified HTTPS, idle cost): not a Python bench.
bench-first-hour: $(BIN)/fsctl
	bash bench/first_hour.sh

# One benchmark: `make bench-gate` runs bench/bench_gate.py, `make bench-gate-tls` bench/bench_gate_tls.py.
bench-%: $(BIN)/fsctl accel
	$(BIN)/python bench/bench_$(subst -,_,$*).py

run: $(BIN)/fsctl accel
	$(BIN)/fsctl serve

clean:
	rm -rf $(VENV) ui/dist ui/node_modules .pytest_cache .ruff_cache build gate/_c

# The systemd runtime's test peer: systemd as PID 1 in a container (see ../shared/peers/README.md), from a
# minimal Debian rootfs made by debootstrap (needs the Debian mirror; ~5 min here) imported into Docker.
# `make test-systemd` runs the runtime conformance suite and the supervisor's systemd tests against it.
SYSTEMD_IMAGE ?= infracore-test/systemd:1
DEBIAN_MIRROR ?= http://deb.debian.org/debian
.PHONY: systemd-image test-systemd
systemd-image:
	@docker image inspect $(SYSTEMD_IMAGE) >/dev/null 2>&1 && echo "$(SYSTEMD_IMAGE) exists" || { set -e; \
	  command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap; \
	  d=$$(mktemp -d); trap 'rm -rf "$$d"' EXIT; \
	  debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus bookworm "$$d/rootfs" $(DEBIAN_MIRROR); \
	  tar -C "$$d/rootfs" -c . | docker import -c 'CMD ["/lib/systemd/systemd"]' - $(SYSTEMD_IMAGE); }

test-systemd: $(BIN)/fsctl systemd-image
	$(BIN)/python -m pytest -q -rs $(PYTEST_ARGS) tests/orch/test_runtime_conformance.py tests/orch/test_units.py \
	  tests/orch/test_systemd_orch.py tests/e2e/test_install_service.py
