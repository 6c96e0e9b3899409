# textback: the two commands that matter are `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup lab test-deps demo test unit bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

lab:
	lab/build-root.sh

# Kannel and MariaDB, which the tests run for real.
test-deps:
	tools/install-test-deps.sh

demo: setup lab
	$(PY) -m lab.demo

test: setup lab test-deps
	$(PY) -m pytest

unit: setup test-deps
	$(PY) -m pytest -m 'not lab'

bench: setup lab
	$(PY) bench/latency.py
	$(PY) bench/concurrent_latency.py
	$(PY) bench/agi_per_call.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
