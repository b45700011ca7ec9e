"""
Time stamps as integer nanoseconds: the one conversion to and from ``sec`` / ``nanosec``.

Every time stamp in the project is an ``int`` of nanoseconds (``stamp_ns``). ROS messages carry
``builtin_interfaces/Time`` and ``Duration`` (``sec``, ``nanosec``); these functions convert
without importing ROS (any object with those two attributes will do: an rclpy message, a
``rosbags`` message). The ROS adapters build the messages with ``ros.messages``.
"""

from typing import Protocol

__all__ = ['NS_PER_S', 'seconds_to_ns', 'split_ns', 'stamp_to_ns']

NS_PER_S = 1_000_000_000


class SecNanosec(Protocol):
    """What ``builtin_interfaces/Time`` and ``Duration`` have in common."""

    @property
    def sec(self) -> int: ...

    @property
    def nanosec(self) -> int: ...


def stamp_to_ns(stamp: SecNanosec) -> int:
    """Integer nanoseconds of a ``Time`` / ``Duration`` (``sec * 1e9 + nanosec``)."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def split_ns(ns: int) -> tuple[int, int]:
    """``(sec, nanosec)`` of integer nanoseconds, ``0 <= nanosec < 1e9`` (also for ``ns < 0``)."""
    sec, nanosec = divmod(int(ns), NS_PER_S)
    return sec, nanosec


def seconds_to_ns(seconds: float) -> int:
    """Float seconds rounded to the nearest integer nanosecond."""
    return round(float(seconds) * NS_PER_S)
