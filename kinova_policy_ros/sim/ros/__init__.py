"""ROS 2 adapters of the simulator: sim node, expert node, recorder, DDS evaluation."""

from kinova_policy_ros.ros import signals

# a node process stops on SIGINT / SIGTERM from its first moment on (see ros.signals)
signals.install_for_entry_point()
