# Every target bootstraps .venv (pinned by constraints.txt) when it is missing or stale.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1

.PHONY: setup reproduce test bench lint format clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[notebooks,dev]'
	touch $(STAMP)

setup: $(STAMP)

reproduce: $(STAMP)
	$(BIN)/vbon reproduce --profile smoke

# Two lanes side by side, one per core; within a lane nothing runs concurrently. Lane one: the
# unit tests, then notebook 08 (it needs only 02's caches and 03's runs, long finished by then,
# and would train any missing run itself); lane two: notebooks 01-07 in order (nbval). Lane
# one's report is printed at the end. `pytest` alone runs everything in turn.
LAST_NOTEBOOK := notebooks/08_beyond_the_paper.ipynb
test: $(STAMP)
	@( $(BIN)/python -m pytest tests; echo $$? > .pytest-unit.rc; \
	  $(BIN)/python -m pytest $(LAST_NOTEBOOK); echo $$? > .pytest-last.rc ) > .pytest-unit.log 2>&1 & lane=$$!; \
	$(BIN)/python -m pytest $(filter-out $(LAST_NOTEBOOK),$(wildcard notebooks/*.ipynb)); notebooks=$$?; \
	wait $$lane; tests=$$(cat .pytest-unit.rc); last=$$(cat .pytest-last.rc); \
	echo "== unit tests (tests/), then $(LAST_NOTEBOOK)"; cat .pytest-unit.log; \
	echo "== exit: unit tests $$tests, notebooks 01-07 $$notebooks, notebook 08 $$last"; \
	test $$tests -eq 0 && test $$notebooks -eq 0 && test $$last -eq 0

bench: $(STAMP)
	for f in benchmarks/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf runs/smoke
