# Two commands do everything: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
export DEBUG ?= 1
DEMO_DEVICES ?= 10000
DEMO_SEED ?= 7

.PHONY: demo test lint migrate run worker bench-optimizer bench-sync bench-session clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

migrate: $(VENV)/.installed
	$(PY) manage.py migrate --no-input -v0

demo: migrate
	$(PY) manage.py seed_demo --devices $(DEMO_DEVICES) --seed $(DEMO_SEED)
	$(PY) manage.py setup_schedules
	$(PY) manage.py demo_run --devices $(DEMO_DEVICES) --seed $(DEMO_SEED)
	$(PY) manage.py demo_summary
	$(PY) manage.py demo_cycle_end --devices $(DEMO_DEVICES) --seed $(DEMO_SEED)

# One pytest worker per CPU (pytest-xdist): the suite is over half an hour in one process.
PYTEST_WORKERS ?= auto
test: $(VENV)/.installed
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(PY) -m ruff check .

run: migrate
	$(PY) manage.py runserver 127.0.0.1:8000

worker: migrate
	$(PY) manage.py qcluster

# Benchmarks print tables; run by hand (bench-sync and bench-session need the local PostgreSQL).
bench-optimizer: $(VENV)/.installed
	$(PY) bench/optimizer.py

bench-sync: $(VENV)/.installed
	$(PY) bench/sync.py

bench-session: $(VENV)/.installed
	$(PY) bench/session.py

clean:
	rm -rf $(VENV) var
