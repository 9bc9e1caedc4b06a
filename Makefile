# make test: lint and the test suite.  make demo: the whole path on this machine, offline.
# Both create .venv when it is missing and install the project with its test extras.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.faxgw-installed

.PHONY: test demo lint bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

lint: $(STAMP)
	$(PY) -m ruff check faxgw tests bench
	$(PY) -m mypy faxgw

test: lint
	$(PY) -m pytest

demo: $(STAMP)
	$(VENV)/bin/faxgw --config config/faxgw.toml demo

bench: $(STAMP)
	$(PY) bench/throughput.py

clean:
	rm -rf demo-out .pytest_cache .ruff_cache
