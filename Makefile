# Every target creates .venv and installs the project when it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint chromium demo broker down bench bench-backlog bench-latency bench-scaling bench-alerts bench-determinism bench-all clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP) lint chromium
	$(BIN)/python -m pytest -n 2 --dist loadfile streams producers sinks tools tests

# The HTML report's browser test (tests/integration/test_report.py) runs headless Chromium:
# Debian's chromium package, installed with apt-get (sudo when not root) when none is on the PATH.
CHROMIUM_HELP := Chromium is required for the report tests (tests/integration/test_report.py): \
install it (Debian/Ubuntu: sudo apt-get install chromium) so that chromium is on the PATH, then run make test again
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  sudo=; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	  if ! command -v apt-get >/dev/null 2>&1 || { [ -n "$$sudo" ] && ! command -v sudo >/dev/null 2>&1; }; then \
	    echo "$(CHROMIUM_HELP)" >&2; exit 1; \
	  fi; \
	  echo "Installing Chromium for the report tests (apt-get install chromium)"; \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null \
	    && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
	    && command -v chromium >/dev/null 2>&1 \
	    || { echo "$(CHROMIUM_HELP)" >&2; exit 1; }; \
	}

demo: $(STAMP)
	$(BIN)/python -m tools.demo

broker: $(STAMP)
	$(BIN)/python -m tools.broker start

down: $(STAMP)
	$(BIN)/python -m tools.broker stop

# Throughput beside the do-nothing Faust agent (~3 min); the same at 3, 30, 100 and 300 features per
# prediction with bytes per pending request per width (~10 min, writes its section of BENCHMARKS.md);
# the replay producer.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.bench_worker --events 100000 --runs 3
	$(BIN)/python -m benchmarks.bench_features --events 40000 --runs 2 --pending 100000 --write
	$(BIN)/python -m benchmarks.bench_replay

# (c) 1M-event backlog beside the do-nothing Faust agent, (e) peak RSS and bytes per pending request
# (~20 min); each part writes its section of BENCHMARKS.md.
bench-backlog: $(STAMP)
	$(BIN)/python -m benchmarks.bench_backlog --events 1000000 --runs 3 --pending 1000000 --write

# (d) label -> window row and label -> alert latency at 1/2, 1/4 and 1/10 of the maximum rate (~20 min)
bench-latency: $(STAMP)
	$(BIN)/python -m benchmarks.bench_latency --write

# (3) one worker against two workers of one app on the same 4 partitions, through one ClickHouse (~2 min)
bench-scaling: $(STAMP)
	$(BIN)/python -m benchmarks.bench_scaling --events 100000 --runs 3

# Alert detection quality: every built-in scenario (plus a 410k-event and a small-window stable run)
# replayed as a backlog and live (1000x real time) through broker, worker and store; false alerts,
# flaps, repeats, orphan resolves, detection delays, backlog = live (~23 min); writes its section.
bench-alerts: $(STAMP)
	$(BIN)/python -m benchmarks.bench_alerts --write

# Alert determinism: every scenario, all seven in one log and two logs of other shapes
# (benchmarks/foreign_logs.py) read with default settings on 1 partition, on 8, and on 4 with
# three kill -9 restarts, as a backlog and live; the same alert rows and figures (~28 min).
bench-determinism: $(STAMP)
	$(BIN)/python -m benchmarks.bench_determinism --write

bench-all: bench bench-backlog bench-latency bench-scaling bench-alerts bench-determinism

clean:
	rm -rf .data
