# Quick start: `make demo` runs the daemon on the demo profile; `make test` installs what the tests
# need (system packages when root, cached rigs) and runs the whole suite.
# Both create or refresh .venv from this checkout first.
PYTHON ?= python3
VENV   ?= .venv
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: demo demo-openvino test test-deps check lint venv clean rigs

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[opencv,ort,openvino,http,metrics,view,dev]'
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/edge run --profile demo

demo-openvino: $(STAMP)
	$(VENV)/bin/edge run --profile demo-openvino

# pytest exits 5 when it collected no test; make treats any non-zero exit as failure.
# The static checks run first: `.ci/run` calls `make test`, so CI fails on a lint or type error too.
test: test-deps check rigs
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# The system packages the tests' real counterparts need (brokers, PostgreSQL, Chromium, systemd-nspawn,
# qemu, GStreamer), installed when root; a no-op when they are there.
test-deps:
	bash tools/test_deps.sh

# The cached test rigs (Home Assistant, arm64 and nspawn rootfs, transformers serve), built side by
# side when missing; a no-op when they are there. Tests build a missing rig themselves too.
rigs: $(STAMP)
	$(VENV)/bin/python -m tests.rigs.prebuild

# Lint, formatting and types; the import walls are a test (tests/unit/test_import_boundaries.py).
check: $(STAMP)
	$(VENV)/bin/ruff check edge tests tools benchmarks examples
	$(VENV)/bin/ruff format --check edge tests tools benchmarks examples
	$(VENV)/bin/mypy edge tests

# Kept for muscle memory: the same as `check`.
lint: check

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache

# A board's userland under emulation (tools/arm64_rig.py: arm64 Debian rootfs, qemu-user, needs root,
# qemu-user-static, binfmt-support, mmdebstrap; cached under ${EDGE_TEST_CACHE:-/var/cache/edge-tests}).
# CI runs the bookworm check set (tests/integration/test_arm64_rig.py); these run every check.
.PHONY: arm64-full rig-arm64-trixie
arm64-full: $(STAMP)
	$(VENV)/bin/python tools/arm64_rig.py --suite bookworm --set full

rig-arm64-trixie: $(STAMP)
	$(VENV)/bin/python tools/arm64_rig.py --suite trixie --set full
