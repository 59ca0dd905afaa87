# Every target creates .venv and installs the project when it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint demo broker down bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP) lint
	$(BIN)/python -m pytest streams producers sinks tests

demo: $(STAMP)
	$(BIN)/python -m streams.demo

broker: $(STAMP)
	$(BIN)/python -m streams.broker start

down: $(STAMP)
	$(BIN)/python -m streams.broker stop

bench: $(STAMP)
	$(BIN)/python -m benchmarks.bench_worker --events 100000 --runs 3
	$(BIN)/python -m benchmarks.bench_replay

clean:
	rm -rf .data
