"""
Run a node until SIGINT or SIGTERM and exit cleanly: exit code 0, no traceback.

The ros2/examples pattern (catch ``KeyboardInterrupt`` / ``ExternalShutdownException``, destroy
the node and ``try_shutdown`` in ``finally``) with one change that removes the race behind
``RCLError: the given context is not valid``: rclpy's signal handlers are off
(``SignalHandlerOptions.NO``); SIGINT and SIGTERM set a stop flag (``ros.signals``) that the
spin loop checks between callbacks, so the context is shut down only after the executor has
stopped using it. A stop requested during start-up (imports, node construction) ends the
process as soon as the node is built, also with code 0.
"""

from collections.abc import Callable
import sys

from kinova_policy_ros.core.errors import KinovaPolicyError
from kinova_policy_ros.ros import signals
import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

SPIN_PERIOD_S = 0.05
"""Longest wait of the spin loop before it looks at the stop flag again."""


def spin_until_stopped(node: Node, stopped: Callable[[], bool] = signals.stop_requested) -> None:
    """Spin ``node`` until ``stopped()`` or its context is shut down."""
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    try:
        while not stopped() and node.context.ok():
            executor.spin_once(timeout_sec=SPIN_PERIOD_S)
    finally:
        executor.remove_node(node)
        executor.shutdown(timeout_sec=1.0)


def run_node(factory: Callable[[], Node], name: str, args: list[str] | None = None) -> int:
    """Spin the node ``factory()`` until SIGINT / SIGTERM; 0 on a clean exit, 1 on a bad one."""
    previous = signals.install()
    node: Node | None = None
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
        if not signals.stop_requested():
            node = factory()
            spin_until_stopped(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (KinovaPolicyError, ParameterException) as err:
        print(f'{name}: {err}', file=sys.stderr)
        return 1
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        signals.restore(previous)
    return 0
