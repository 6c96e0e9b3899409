# textback: the two commands that matter are `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup lab test-deps demo test unit fuzz bench clean deb package-lab

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

# The lab half and the rest at once, in separate network namespaces (tools/run-tests.sh).
test: setup lab test-deps package-lab
	PY=$(PY) tools/run-tests.sh

unit: setup test-deps
	$(PY) -m pytest -m 'not lab'

# The property tests of hostile input (AMI, reply mail, webhooks, config, CLI) with 20x the budget.
fuzz: setup test-deps
	TEXTBACK_FUZZ_FACTOR=20 $(PY) -m pytest -q -p no:cacheprovider tests/test_fuzz_ami.py tests/test_fuzz_ami_repeats.py \
		tests/test_fuzz_config.py tests/test_fuzz_webhooks.py tests/test_reply_auth.py \
		tests/test_addresses.py tests/test_cli_hostile.py tests/test_tracker.py

bench: setup lab
	$(PY) bench/latency.py
	$(PY) bench/concurrent_latency.py
	$(PY) bench/throughput.py
	$(PY) bench/agi_per_call.py
	$(PY) bench/web_pages.py
	$(PY) bench/pipeline.py
	$(PY) bench/scaling.py
	$(PY) bench/push_latency.py

# What tests/test_debian_package.py installs and boots, made while the network is there:
# the clean Debian 12 root (cached by recipe), this tree's package and that of the release it
# upgrades from (each cached by source).
UPGRADE_FROM ?= 75583df
package-lab:
	lab/build-bookworm-root.sh >/dev/null
	tools/build-deb.sh >/dev/null
	tools/build-deb.sh $(UPGRADE_FROM) >/dev/null

# The Debian package (dh-virtualenv) in dist/, built from what git would commit; cached by tree.
deb:
	tools/build-deb.sh

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis dist
