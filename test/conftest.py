"""Shared pytest set-up: isolate the DDS traffic of this run, render MuJoCo headless."""

import os

# DDS: never talk to another run on this machine (or to anything off it). A per-run domain id
# derived from the pid keeps concurrent pytest runs apart; child processes inherit it.
os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
os.environ.setdefault('ROS_DOMAIN_ID', str(1 + os.getpid() % 100))
os.environ.setdefault('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')
os.environ.setdefault('MUJOCO_GL', 'egl')
