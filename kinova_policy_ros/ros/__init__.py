"""ROS 2 adapters: the policy node, its parameters and message helpers (imports rclpy)."""

from kinova_policy_ros.ros import signals

# A node process stops on SIGINT / SIGTERM from its first moment on, before rclpy, numpy and
# torch are imported (see ros.signals).
signals.install_for_entry_point()
