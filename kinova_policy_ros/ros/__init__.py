"""ROS 2 adapters: the policy node, its parameters and message helpers (imports rclpy)."""
