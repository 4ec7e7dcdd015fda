# Lantern: `make run` sets up and starts the app; `make test` sets up and runs every test.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8501

.PHONY: run test test-unit test-app test-e2e test-ray setup setup-dev browser bench bench-scale clean

$(VENV)/.runtime: requirements.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Lantern needs $(PYTHON) on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

setup: $(VENV)/.runtime

setup-dev: $(VENV)/.dev browser

# Debian's Chromium drives the end-to-end tests (Playwright's own browser download is not used).
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
		echo "Installing Debian's chromium for the end-to-end tests"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi
	@if [ ! -x /usr/sbin/nginx ]; then \
		echo "Installing Debian's nginx for the two-replica end-to-end test"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; \
	fi

run: setup
	$(PY) -m streamlit run app.py --server.port $(PORT)

test: setup-dev
	$(PY) -m pytest tests

test-unit: setup-dev
	$(PY) -m pytest tests/unit

test-app: setup-dev
	$(PY) -m pytest tests/app

test-e2e: setup-dev
	$(PY) -m pytest tests/e2e

test-ray: setup-dev
	$(PY) -m pytest tests/ray

bench: setup-dev
	$(PY) bench/aegmm_kdd.py && $(PY) bench/seq2seq.py && $(PY) bench/distillation.py && $(PY) bench/cem.py && $(PY) bench/anchors.py

# lantern score on a generated 10-million-row file, in the process and on Ray (see docs/BENCHMARKS.md).
bench-scale: setup-dev
	$(PY) bench/scale.py

clean:
	rm -rf $(VENV) .pytest_cache artifacts

# Two replicas behind nginx with sticky sessions and a local Ray head (bench/replicas.sh; `bench/replicas.sh stop`).
.PHONY: replicas
replicas: setup-dev
	bench/replicas.sh start
