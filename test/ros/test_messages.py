"""Tests of kinova_policy_ros.ros.messages: Time / Duration of ns, type names, the clock."""

from collections.abc import Iterator

from builtin_interfaces.msg import Duration, Time
from kinova_policy_ros.core.stamps import NS_PER_S, stamp_to_ns
from kinova_policy_ros.ros.messages import (
    duration_msg,
    duration_ns_msg,
    now_ns,
    ros_type_name,
    time_msg,
)
import pytest
import rclpy
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from trajectory_msgs.msg import JointTrajectory

NS_VALUES = [
    0,
    1,
    999_999_999,
    NS_PER_S,
    NS_PER_S + 1,
    1_700_000_000_123_456_789,
    -1,
    -999_999_999,
    -NS_PER_S,
    -NS_PER_S - 1,
    -2_500_000_000,
]


@pytest.mark.parametrize('ns', NS_VALUES)
def test_time_msg_splits_and_round_trips(ns: int):
    msg = time_msg(ns)
    assert isinstance(msg, Time)
    assert 0 <= msg.nanosec < NS_PER_S  # also for negative stamps: sec carries the sign
    assert msg.sec == ns // NS_PER_S
    assert stamp_to_ns(msg) == ns


@pytest.mark.parametrize('ns', NS_VALUES)
def test_duration_ns_msg_splits_and_round_trips(ns: int):
    msg = duration_ns_msg(ns)
    assert isinstance(msg, Duration)
    assert 0 <= msg.nanosec < NS_PER_S
    assert stamp_to_ns(msg) == ns


@pytest.mark.parametrize(
    ('ns', 'sec', 'nanosec'),
    [
        (1_500_000_000, 1, 500_000_000),
        (-1, -1, 999_999_999),
        (-250_000_000, -1, 750_000_000),
        (-2_000_000_000, -2, 0),
    ],
)
def test_negative_and_fractional_values_keep_nanosec_non_negative(ns: int, sec: int, nanosec: int):
    for msg in (time_msg(ns), duration_ns_msg(ns)):
        assert (msg.sec, msg.nanosec) == (sec, nanosec)


@pytest.mark.parametrize(
    ('seconds', 'ns'),
    [
        (0.0, 0),
        (0.1, 100_000_000),
        (1.5, 1_500_000_000),
        (2.4e-9, 2),  # rounded to the nearest nanosecond, not truncated
        (2.6e-9, 3),
        (0.9999999996, NS_PER_S),  # rounds up into the next second
        (-0.25, -250_000_000),
        (-1.0000000026, -1_000_000_003),
    ],
)
def test_duration_msg_rounds_float_seconds_to_the_nanosecond(seconds: float, ns: int):
    msg = duration_msg(seconds)
    assert isinstance(msg, Duration)
    assert 0 <= msg.nanosec < NS_PER_S
    assert stamp_to_ns(msg) == ns


def test_duration_msg_equals_duration_ns_msg_of_the_rounded_value():
    for seconds in (0.05, 0.15, 1.0 / 3.0, -0.05, 12 * 0.05):
        want = duration_ns_msg(round(seconds * NS_PER_S))
        got = duration_msg(seconds)
        assert (got.sec, got.nanosec) == (want.sec, want.nanosec)


def test_ros_type_name_of_message_classes():
    assert ros_type_name(Image) == 'sensor_msgs/msg/Image'
    assert ros_type_name(JointTrajectory) == 'trajectory_msgs/msg/JointTrajectory'
    assert ros_type_name(Duration) == 'builtin_interfaces/msg/Duration'


@pytest.fixture
def node() -> Iterator[Node]:
    context = rclpy.Context()
    rclpy.init(context=context)
    n = rclpy.create_node('messages_test', context=context)
    try:
        yield n
    finally:
        n.destroy_node()
        rclpy.try_shutdown(context=context)


def test_now_ns_is_the_node_clock_in_integer_nanoseconds(node: Node):
    before = node.get_clock().now().nanoseconds
    got = now_ns(node)
    after = node.get_clock().now().nanoseconds
    assert isinstance(got, int)
    assert before <= got <= after


def test_now_ns_follows_sim_time(node: Node):
    # use_sim_time without a /clock publisher: ROS time stands at 0.
    node.set_parameters([Parameter('use_sim_time', value=True)])
    assert now_ns(node) == 0
