# tune_m3 — the two commands a newcomer needs: `make demo` and `make test`.
# Both create .venv and install on first use; a second run skips the install (stamp file).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.tune_m3-installed
# CPU wheel by default; a GPU user installs their own torch into .venv first (README "GPU machines"),
# and TORCH_SPEC= (empty) skips this step.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=
# extras installed with the package: CI adds mmsa (the MMSA model zoo's tests run only with it)
EXTRAS ?= dev

.PHONY: demo test test-fast lint format install clean-venv

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@if [ -n "$(TORCH_SPEC)" ] && ! $(PY) -c "import torch" 2>/dev/null; then \
		echo "installing $(TORCH_SPEC) (CPU build)"; \
		$(PY) -m pip install --quiet "$(TORCH_SPEC)"; \
	fi
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m tune_m3.demo

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean-venv:
	rm -rf $(VENV)
