# Two commands do all set-up on a fresh machine with Python 3.10+:
#   make demo   run the demo workload (embedded L2: no server needed)
#   make test   lint, format check, mypy --strict, and the test suite with coverage
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint unasync bench bench-detail stack system-deps clean

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	touch $@

# Everything the tests and linters need (dev pulls in every extra).
$(VENV)/.installed: pyproject.toml $(VENV)/.created
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# The demo needs the library, its embedded L2 (fakeredis) and the command line only.
$(VENV)/.demo-installed: pyproject.toml $(VENV)/.created
	$(PY) -m pip install --quiet -e '.[embedded,cli]'
	touch $@

demo: $(VENV)/.demo-installed
	$(PY) -m hiercache demo

# The test suite runs a real redis-server and a real Prometheus (promtool, amtool).
system-deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v amtool >/dev/null || missing="$$missing prometheus-alertmanager"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts
	PATH=$(VENV)/bin:$$PATH $(PY) scripts/unasync.py --check
	$(VENV)/bin/mypy --strict src

# The sync front (src/hiercache/_sync/) is generated from the async one: edit _async/, then this.
unasync: $(VENV)/.installed
	PATH=$(VENV)/bin:$$PATH $(PY) scripts/unasync.py

test: system-deps lint
	$(VENV)/bin/pytest --cov=hiercache --cov-report=term-missing

# One table: every path against its peer or raw-redis baseline (its own redis-server);
# exits non-zero when a target is missed. bench-detail: the older, narrower benchmarks.
bench: $(VENV)/.installed
	$(PY) benchmarks/suite.py

bench-detail: $(VENV)/.installed
	$(PY) benchmarks/l1_latency.py
	$(PY) benchmarks/telemetry_overhead.py
	$(PY) benchmarks/hit_ratio.py

# The observability stack without Docker: redis-server, prometheus, alertmanager and the demo
# from local binaries, with the compose stack's configuration files.
stack: $(VENV)/.installed system-deps
	PYTHON=$(PY) bash scripts/stack.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
