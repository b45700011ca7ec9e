"""Message helpers shared by the ROS adapters: time stamps, durations, type names, the clock."""

from builtin_interfaces.msg import Duration, Time
from kinova_policy_ros.core.stamps import seconds_to_ns, split_ns
from rclpy.node import Node

__all__ = ['duration_msg', 'duration_ns_msg', 'now_ns', 'ros_type_name', 'time_msg']


def time_msg(stamp_ns: int) -> Time:
    """``builtin_interfaces/Time`` of integer nanoseconds."""
    sec, nanosec = split_ns(stamp_ns)
    return Time(sec=sec, nanosec=nanosec)


def duration_ns_msg(ns: int) -> Duration:
    """``builtin_interfaces/Duration`` of integer nanoseconds."""
    sec, nanosec = split_ns(ns)
    return Duration(sec=sec, nanosec=nanosec)


def duration_msg(seconds: float) -> Duration:
    """``builtin_interfaces/Duration`` of float seconds (rounded to the nanosecond)."""
    return duration_ns_msg(seconds_to_ns(seconds))


def now_ns(node: Node) -> int:
    """Return the node's clock (ROS time with ``use_sim_time``) in integer nanoseconds."""
    return int(node.get_clock().now().nanoseconds)


def ros_type_name(msg_type: type) -> str:
    """``sensor_msgs/msg/Image`` style name of an rclpy message class."""
    module = msg_type.__module__.split('.')[0]
    return f'{module}/msg/{msg_type.__name__}'
