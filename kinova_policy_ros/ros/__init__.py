"""ROS 2 adapters: the policy node, its parameters and message helpers (imports rclpy)."""

import os
import signal
import sys
import threading

STOP = threading.Event()
"""Set by SIGINT / SIGTERM in a ``policy_node`` process, from this package's import on."""

_ENTRY_POINTS = ('kinova_policy_ros.ros.policy_node', 'policy_node')


def _started_as_policy_node() -> bool:
    """Return whether this process runs ``-m ...policy_node`` or the ``policy_node`` script."""
    argv = list(getattr(sys, 'orig_argv', []))
    if '-m' in argv[1:]:
        i = argv.index('-m', 1)
        return i + 1 < len(argv) and argv[i + 1] == _ENTRY_POINTS[0]
    return bool(sys.argv) and os.path.basename(sys.argv[0]) == _ENTRY_POINTS[1]


# Before rclpy, numpy and torch are imported: a stop signal during the imports is a stop
# request for policy_node's main(), not a KeyboardInterrupt traceback or death by SIGTERM.
if _started_as_policy_node() and threading.current_thread() is threading.main_thread():
    for _sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(_sig, lambda signum, frame: STOP.set())
