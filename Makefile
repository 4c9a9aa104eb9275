# The two quick-start commands (see README):
#   make run    install into .venv if needed, then `fixgw run` (gateway + embedded UAT venue)
#   make test   install into .venv if needed, then lint, type-check and the test suite
# The first install compiles QuickFIX from source (~5 min on 2 cores); pip caches the wheel.

PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: run test check pytest bench clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	rm -f $(VENV)/.installed-* && touch $(STAMP)

run: $(STAMP)
	$(BIN)/fixgw run $(ARGS)

check: $(STAMP)
	$(BIN)/python tools/gen_proto.py --check
	$(BIN)/ruff check gateway tests tools
	$(BIN)/mypy

# Two workers: most of the suite's time is spent waiting on real processes (outages, quiet
# periods, logons), so two halve it on 2 cores. Three took ~10 min instead of ~12 on a 2.5 GHz
# Xeon, but loaded the machine enough that tests timing a simulator's flow failed in one of
# four full runs. Whole files go to one worker (loadfile), so a module's shared venue and
# gateway are started once. PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 2

pytest: $(STAMP)
	$(BIN)/python -m pytest -q --durations=15 -n $(PYTEST_WORKERS) --dist loadfile \
		$(PYTEST_ARGS)

test: check pytest

clean-venv:
	rm -rf $(VENV)
