"""Shared pytest set-up: isolate the DDS traffic of this run, render MuJoCo headless."""

import atexit
import os
from pathlib import Path
import sys

from hypothesis import settings
from kinova_policy_ros.testing.dds import claim_domain_id
import pytest

# The tests mirror the package in sub-folders (--import-mode=importlib); `helpers` is shared.
sys.path.insert(0, str(Path(__file__).resolve().parent))

# DDS: never talk to another run on this machine (or to anything off it). Each test session
# claims a domain id of its own with a lock file (held until the session ends; a concurrent
# session takes the next free id); child processes inherit it. An id set by the caller wins.
os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
if 'ROS_DOMAIN_ID' not in os.environ:
    _DOMAIN = claim_domain_id()
    os.environ['ROS_DOMAIN_ID'] = str(_DOMAIN.domain_id)
    atexit.register(_DOMAIN.release)  # (the kernel would drop the lock anyway; no warning)
os.environ.setdefault('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')
os.environ.setdefault('MUJOCO_GL', 'egl')

# Property-based tests: the same generated cases on every run (a red CI is a reproducible bug);
# HYPOTHESIS_PROFILE=explore draws new ones. No example database is written into the checkout.
settings.register_profile('repeatable', derandomize=True, database=None)
settings.register_profile('explore', derandomize=False, database=None)
settings.load_profile(os.environ.get('HYPOTHESIS_PROFILE', 'repeatable'))

TEST_DIR = Path(__file__).resolve().parent
# The ROS-facing tests: `make test` runs them a second time on ROS 2 Jazzy (pytest -m ros).
ROS_FACING_DIRS = ('ros/', 'sim/ros/', 'launch/')
ROS_FACING_FILES = ('test_demo.py', 'test_package_xml.py')


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test of the ROS adapters, the launch files and every DDS test with ``ros``."""
    for item in items:
        rel = item.path.resolve().relative_to(TEST_DIR).as_posix()
        if (
            rel.startswith(ROS_FACING_DIRS)
            or rel in ROS_FACING_FILES
            or item.get_closest_marker('dds') is not None
        ):
            item.add_marker(pytest.mark.ros)
