"""Transformer joint-trajectory policies for Kinova Gen3 arms, trained offline, run on ROS 2."""

__version__ = '0.1.0'
