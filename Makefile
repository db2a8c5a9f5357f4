# The two commands of the README: `make demo` and `make test`. Both set up their own venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-unit test-integration bench protos clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/gpufabric run examples/hello.py

test: $(VENV)/.installed
	$(PY) scripts/gen_protos.py --check
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -m "not gpu"

test-unit: $(VENV)/.installed
	$(PY) -m pytest -q -m "not integration and not gpu"

bench: $(VENV)/.installed
	$(PY) bench/call_overhead.py

protos: $(VENV)/.installed
	$(PY) scripts/gen_protos.py

clean:
	rm -rf $(VENV) build *.egg-info
