"""Shared pytest set-up: isolate the DDS traffic of this run, render MuJoCo headless."""

import os
from pathlib import Path
import sys

from kinova_policy_ros.testing.dds import claim_domain_id

# The tests mirror the package in sub-folders (--import-mode=importlib); `helpers` is shared.
sys.path.insert(0, str(Path(__file__).resolve().parent))

# DDS: never talk to another run on this machine (or to anything off it). Each test session
# claims a domain id of its own with a lock file (held until the session ends; a concurrent
# session takes the next free id); child processes inherit it. An id set by the caller wins.
os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
if 'ROS_DOMAIN_ID' not in os.environ:
    _DOMAIN = claim_domain_id()
    os.environ['ROS_DOMAIN_ID'] = str(_DOMAIN.domain_id)
os.environ.setdefault('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')
os.environ.setdefault('MUJOCO_GL', 'egl')
