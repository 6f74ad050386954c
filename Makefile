# Quick start: `make demo` runs the daemon on the demo profile; `make test` runs the whole suite.
# Both create or refresh .venv from this checkout first.
PYTHON ?= python3
VENV   ?= .venv
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: demo test lint venv clean

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[ort,openvino,dev]'
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/edge run --profile demo

# pytest exits 5 when it collected no test; make treats any non-zero exit as failure.
test: $(STAMP)
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check edge tests tools benchmarks
	$(VENV)/bin/ruff format --check edge tests tools benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
