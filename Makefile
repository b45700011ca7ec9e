# The README's two commands: `make demo` (the main job) and `make test` (all tests).
# Both create or refresh the virtual environment first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The ROS-facing tests (pytest -m ros) run a second time on ROS 2 Jazzy's PyPI wheels.
VENV_JAZZY ?= .venv-jazzy
STAMP_JAZZY := $(VENV_JAZZY)/.installed
export MUJOCO_GL ?= egl

.PHONY: setup demo test lint pytest pytest-jazzy py310 bench clean

$(STAMP): requirements.txt requirements-dev.txt requirements-ros-kilted.txt setup.py scripts/setup_venv.sh
	VENV=$(VENV) bash scripts/setup_venv.sh

$(STAMP_JAZZY): requirements.txt requirements-dev.txt requirements-ros-jazzy.txt setup.py scripts/setup_venv.sh
	VENV=$(VENV_JAZZY) ROS_PYPI_DISTRO=jazzy bash scripts/setup_venv.sh

setup: $(STAMP)

demo: $(STAMP)
	$(PY) -m kinova_policy_ros.demo $(ARGS)

test: lint pytest pytest-jazzy py310

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

pytest: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# With a sourced ROS 2 (ROS_DISTRO set) the run above used it: no PyPI wheels to test.
ifdef ROS_DISTRO
pytest-jazzy:
	@echo '[test] ROS_DISTRO=$(ROS_DISTRO) is sourced: the PyPI Jazzy run is skipped'
else
pytest-jazzy: $(STAMP_JAZZY)
	$(VENV_JAZZY)/bin/python -m pytest -m ros $(PYTEST_ARGS)
endif

# Python 3.10 (Humble's): compile, import and the non-ROS tests that need no torch.
py310:
	bash scripts/py310.sh

bench: $(STAMP)
	$(PY) bench/bench_dataloader.py
	$(PY) bench/bench_runner.py
	$(PY) bench/bench_train_step.py

clean:
	rm -rf $(VENV) $(VENV_JAZZY) .venv-py310 build install log .mypy_cache .ruff_cache .pytest_cache
