# The two commands of the README: `make demo` and `make test`. Both set up their own venvs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Orchestrators get a venv each: Airflow 3.3 and Prefect >= 3.7.8 cannot share one (FastAPI pins).
ORCHESTRATOR_TESTS := tests/airflow_provider tests/prefect_integration tests/dagster_resource

.PHONY: demo test test-core test-airflow test-prefect test-dagster test-unit bench bench-orchestrators protos clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,cloud,web]'
	touch $@

.venv-%/.installed: pyproject.toml
	$(PYTHON) -m venv .venv-$*
	.venv-$*/bin/python -m pip install -q --upgrade pip
	.venv-$*/bin/python -m pip install -q -e '.[test,$*]'
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/gpufabric run examples/hello.py

test: test-core test-airflow test-prefect test-dagster

test-core: $(VENV)/.installed
	$(PY) scripts/gen_protos.py --check
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -m "not gpu" $(addprefix --ignore=,$(ORCHESTRATOR_TESTS))

test-airflow: .venv-airflow/.installed
	@if [ -d tests/airflow_provider ]; then .venv-airflow/bin/python -m pytest -q tests/airflow_provider; fi

test-prefect: .venv-prefect/.installed
	@if [ -d tests/prefect_integration ]; then .venv-prefect/bin/python -m pytest -q tests/prefect_integration; fi

test-dagster: .venv-dagster/.installed
	@if [ -d tests/dagster_resource ]; then .venv-dagster/bin/python -m pytest -q tests/dagster_resource; fi

test-unit: $(VENV)/.installed
	$(PY) -m pytest -q -m "not integration and not gpu" $(addprefix --ignore=,$(ORCHESTRATOR_TESTS))

bench: $(VENV)/.installed
	$(PY) bench/call_overhead.py

# Each orchestrator plugin through a real fabric, beside the orchestrator's own way (its own venv each).
bench-orchestrators: .venv-airflow/.installed .venv-prefect/.installed .venv-dagster/.installed
	.venv-airflow/bin/python bench/orchestrators.py airflow
	.venv-prefect/bin/python bench/orchestrators.py prefect
	.venv-dagster/bin/python bench/orchestrators.py dagster

protos: $(VENV)/.installed
	$(PY) scripts/gen_protos.py

clean:
	rm -rf $(VENV) .venv-* build *.egg-info
