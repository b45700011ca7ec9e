"""
Stop requests by SIGINT / SIGTERM, recorded as a flag instead of raised into running code.

rclpy's own handlers shut the context down from the signal handler while the executor may be
building its wait set, which then fails with ``RCLError: the given context is not valid`` (a
traceback and exit code 1 at the end of ``make demo``). The project's node processes (the
policy node, the simulator's nodes) and ``record_demos`` instead record the request here and
leave their loops between callbacks or episodes; the context is shut down afterwards, by the
main thread.

The handlers go in as early as possible: when the process was started as one of the node
entry points (:data:`ENTRY_POINTS`: ``python -m kinova_policy_ros.ros.policy_node``,
``policy_node``, ``python -m kinova_policy_ros.sim.ros.sim_node``, ``sim_node``, ``sim_expert``,
...), importing ``kinova_policy_ros.ros`` or ``kinova_policy_ros.sim.ros`` installs them, before
torch, MuJoCo, numpy and rclpy are imported, so a signal during start-up is a stop request too.
Standard library only.
"""

from collections.abc import Callable, Sequence
import os
import signal
import sys
import threading
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
ENTRY_POINTS = frozenset(
    {
        'kinova_policy_ros.ros.policy_node',
        'policy_node',
        'kinova_policy_ros.sim.ros.sim_node',
        'kinova_policy_ros.sim.ros.expert_node',
        'sim_node',
        'sim_expert',
    }
)

_stop = threading.Event()
Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None


def request_stop(signum: int = 0, frame: FrameType | None = None) -> None:
    """Record a stop request (the signal handler)."""
    _stop.set()


def stop_requested() -> bool:
    """Whether a stop was requested since the handlers were installed."""
    return _stop.is_set()


def install() -> dict[int, Handler]:
    """Route SIGINT and SIGTERM to :func:`request_stop`; return the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, request_stop) for sig in STOP_SIGNALS}


def restore(previous: dict[int, Handler]) -> None:
    """Put back the handlers :func:`install` replaced."""
    for sig, handler in previous.items():
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def entry_point(orig_argv: Sequence[str], argv: Sequence[str]) -> str:
    """Return the module of ``python -m MODULE`` or the script's file name."""
    args = list(orig_argv)
    if '-m' in args[1:]:
        i = args.index('-m', 1)
        return args[i + 1] if i + 1 < len(args) else ''
    return os.path.basename(argv[0]) if argv else ''


def install_for_entry_point() -> bool:
    """Install the handlers when this process is one of :data:`ENTRY_POINTS`."""
    name = entry_point(getattr(sys, 'orig_argv', []), sys.argv)
    if name in ENTRY_POINTS:
        install()
        return True
    return False
