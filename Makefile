# The README's two commands: `make demo` (the main job) and `make test` (all tests).
# Both create or refresh the virtual environment first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export MUJOCO_GL ?= egl

.PHONY: setup demo test lint pytest bench clean

$(STAMP): requirements.txt requirements-dev.txt requirements-ros-pypi.txt setup.py scripts/setup_venv.sh
	VENV=$(VENV) bash scripts/setup_venv.sh

setup: $(STAMP)

demo: $(STAMP)
	$(PY) -m kinova_policy_ros.demo $(ARGS)

test: lint pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

pytest: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) bench/bench_dataloader.py
	$(PY) bench/bench_runner.py
	$(PY) bench/bench_train_step.py

clean:
	rm -rf $(VENV) build install log .mypy_cache .ruff_cache .pytest_cache
