# Both targets work on a fresh machine with only python3: they create .venv and install
# what they need once (again only when pyproject.toml changes): the demo the package and
# its fake server, the tests everything (test and dev extras).
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
DEMO_INSTALLED := $(VENV)/.demo-installed
BENCH_INSTALLED := $(VENV)/.bench-installed

.PHONY: demo test lint typecheck unit bench

$(VENV)/.created:
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	touch $@

$(DEMO_INSTALLED): pyproject.toml $(VENV)/.created
	$(PY) -m pip install --quiet -e ".[testing]"
	touch $@

$(INSTALLED): pyproject.toml $(VENV)/.created
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@ $(DEMO_INSTALLED)

demo: $(DEMO_INSTALLED)
	$(PY) examples/quickstart.py

test: lint typecheck unit

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(INSTALLED)
	$(VENV)/bin/mypy langchain_letta bench

unit: $(INSTALLED)
	$(PY) -m pytest -q

# The bench compares with letta-client (the bench extra), and runs under uvloop too.
$(BENCH_INSTALLED): pyproject.toml $(VENV)/.created
	$(PY) -m pip install --quiet -e ".[bench]"
	touch $@ $(DEMO_INSTALLED)

bench: $(BENCH_INSTALLED)
	$(PY) bench/bench_stream.py
	$(PY) bench/bench_chat.py

# Real Letta servers (0.16.8 with PostgreSQL and Redis, 0.11.7 and 0.6.14; cached under
# ~/.cache/langchain-letta-lab) on loopback against scripts/fakellm.py; see cassettes/README.md.
.PHONY: record test-live

record: $(INSTALLED)
	$(PY) -m scripts.record

test-live: $(INSTALLED)
	LETTA_LIVE=1 $(PY) scripts/letta_lab.py run -- $(PY) -m pytest -q tests/test_live.py tests/test_live_langgraph.py tests/test_live_workers.py
