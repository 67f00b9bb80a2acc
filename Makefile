# Consentry: `make demo` and `make test` do all the set-up on a fresh machine.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
            command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' && { echo $$p; break; }; done)

.PHONY: venv demo test bench lint clean openapi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python >= 3.11 is required" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@

demo: venv
	$(PY) -m engine.demo

test: venv
	bash scripts/ensure-system-deps.sh
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: venv
	bash scripts/ensure-system-deps.sh
	$(PY) -m bench.run_all $(BENCH_ARGS)

# The committed OpenAPI document (tests/api/test_openapi.py checks it equals the served one).
openapi: venv
	$(PY) -c 'from engine.api.openapi import document_text; print(document_text(), end="")' > docs/openapi.json

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache capture demo-data consentry.db*
