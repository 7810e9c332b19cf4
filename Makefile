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

# Two lanes side by side, one per core: the unit tests (their report is printed at the end) and
# the notebooks (nbval). Within a lane nothing runs concurrently. `pytest` alone runs both in turn.
test: $(STAMP)
	@$(BIN)/python -m pytest tests > .pytest-unit.log 2>&1 & unit=$$!; \
	$(BIN)/python -m pytest notebooks; notebooks=$$?; \
	wait $$unit; tests=$$?; \
	echo "== unit tests (tests/)"; cat .pytest-unit.log; \
	echo "== exit: unit tests $$tests, notebooks $$notebooks"; \
	test $$tests -eq 0 && test $$notebooks -eq 0

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
