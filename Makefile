# Two commands on a fresh machine: `make demo` (the whole chain on the embedded synthetic corpus) and
# `make test`. Both create the virtual environment in .venv when it is missing.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
EXTRAS ?= test,text,face,audio,llm
# pytest-xdist workers for `make test` (most of the suite's time is real subprocesses importing torch; 2 = CI's
# cores; TEST_WORKERS=0 runs in one process)
TEST_WORKERS ?= 2

.PHONY: venv demo demo-fast lint test test-fast bench clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/cmer demo

demo-fast: $(STAMP)
	$(VENV)/bin/cmer demo --fast

# style (ruff) and types (mypy); configured in pyproject.toml, versions pinned in setup.cfg's test extra
lint: $(STAMP)
	$(VENV)/bin/ruff check
	$(VENV)/bin/mypy contrastive_mer

test: $(STAMP) lint
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal

test-fast: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal -m "not slow"

clean:
	rm -rf runs lightning_logs .pytest_cache .mypy_cache .ruff_cache
