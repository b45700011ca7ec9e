"""ROS 2 adapters of the simulator: sim node, expert node, recorder, DDS evaluation."""
