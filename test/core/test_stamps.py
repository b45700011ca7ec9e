"""Integer-nanosecond time stamps (kinova_policy_ros.core.stamps)."""

from dataclasses import dataclass

from kinova_policy_ros.core.stamps import NS_PER_S, seconds_to_ns, split_ns, stamp_to_ns
import numpy as np
import pytest


@dataclass
class Stamp:
    sec: int
    nanosec: int


def test_ns_per_s():
    assert NS_PER_S == 10**9


@pytest.mark.parametrize(
    ('sec', 'nanosec', 'ns'),
    [
        (0, 0, 0),
        (0, 1, 1),
        (1, 0, 1_000_000_000),
        (1_700_000_000, 999_999_999, 1_700_000_000_999_999_999),
        (-1, 500_000_000, -500_000_000),  # a Duration of -0.5 s
        (2**31 - 1, 999_999_999, (2**31 - 1) * 10**9 + 999_999_999),  # no float rounding
    ],
)
def test_stamp_to_ns_and_back(sec, nanosec, ns):
    assert stamp_to_ns(Stamp(sec, nanosec)) == ns
    assert split_ns(ns) == (sec, nanosec)


def test_stamp_to_ns_does_not_overflow_numpy_fields():
    # rosbags messages carry numpy scalars: int32 * 1e9 would overflow without int()
    got = stamp_to_ns(Stamp(np.int32(2**31 - 1), np.uint32(999_999_999)))
    assert got == (2**31 - 1) * 10**9 + 999_999_999 and type(got) is int


@pytest.mark.parametrize(
    ('ns', 'expected'),
    [
        (-1, (-1, 999_999_999)),
        (-1_000_000_000, (-1, 0)),
        (-1_000_000_001, (-2, 999_999_999)),
        (1_999_999_999, (1, 999_999_999)),
    ],
)
def test_split_ns_keeps_nanosec_in_range_for_negative_times(ns, expected):
    sec, nanosec = split_ns(ns)
    assert (sec, nanosec) == expected
    assert 0 <= nanosec < NS_PER_S and sec * NS_PER_S + nanosec == ns


@pytest.mark.parametrize(
    ('seconds', 'ns'),
    [
        (0.0, 0),
        (1.5, 1_500_000_000),
        (-1.5, -1_500_000_000),
        (1 / 15, 66_666_667),  # rounded to nearest, not truncated (66_666_666.67)
        (-1 / 15, -66_666_667),
        (2e-9, 2),
        (0.4e-9, 0),
        (0.6e-9, 1),
        (-0.6e-9, -1),
        (3, 3_000_000_000),  # an int is fine
    ],
)
def test_seconds_to_ns_rounds_to_the_nearest_ns(seconds, ns):
    got = seconds_to_ns(seconds)
    assert got == ns and isinstance(got, int)
