# The two set-up commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
KYOTO := {"destination":"Kyoto","dates":"June 1-5, 2026","budget":"$$2000"}

.PHONY: demo test lint bench stop clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[dev]"
	touch $@ $(VENV)/.installed

## demo: install, start the trip planner (embedded NATS if none runs), plan Kyoto, show the trace
demo: $(VENV)/.installed
	$(BIN)/natsmesh start agents/ -d
	$(BIN)/natsmesh list
	$(BIN)/natsmesh call plan_trip '$(KYOTO)' --trace --stream --timeout 120 | tee $(VENV)/demo-output.txt
	$(BIN)/natsmesh trace $$(sed -n 's/^Trace ID: //p' $(VENV)/demo-output.txt)
	@echo
	@echo "The mesh keeps running: try '$(BIN)/natsmesh list --tools', then '$(BIN)/natsmesh stop'."
	@echo "See it live: '$(BIN)/natsmesh dashboard', then open http://127.0.0.1:8000/ (natsmesh gateway serves it at / too)"

## test: install the dev dependencies, lint, run the whole suite and report its coverage
## (the CLI and agent subprocesses included: [tool.coverage.run] in pyproject.toml)
test: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q --cov --cov-report=term

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

## bench: the benchmark suite (add ARGS=--quick for a short run)
bench: $(VENV)/.installed-dev
	$(BIN)/python -m bench $(ARGS)

stop:
	$(BIN)/natsmesh stop

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
