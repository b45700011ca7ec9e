"""
Waiting on other nodes: polling a condition with a deadline, calling a service.

The node whose executor delivers the answers spins in another thread; these functions only
poll. Every wait has a deadline and raises :class:`KinovaPolicyError` naming what it waited for.
"""

from collections.abc import Callable
import json
import time
from typing import Any

from kinova_policy_ros.core.errors import KinovaPolicyError
from rclpy.node import Node
from std_srvs.srv import Trigger


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` every 10 ms; raise KinovaPolicyError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise KinovaPolicyError(f'timed out after {timeout:.0f} s waiting for {what}')
        time.sleep(0.01)


def _no_check() -> None:
    return None


def call_service(
    client: Any,
    request: Any,
    what: str,
    alive: Callable[[], None] = _no_check,
    timeout: float = 10.0,
) -> Any:
    """
    Call a service through ``client`` and return its answer.

    ``alive`` is called while waiting (it raises when a process the answer depends on died).
    ``client`` and the answer are rclpy objects of the service's type (hence ``Any``).
    """
    deadline = time.monotonic() + timeout
    while not client.wait_for_service(timeout_sec=0.2):
        alive()
        if time.monotonic() > deadline:
            raise KinovaPolicyError(f'service {what} not available after {timeout:.0f} s')
    future = client.call_async(request)

    def done() -> bool:
        alive()
        return bool(future.done())

    wait_for(done, timeout, f'the answer of {what}')
    result = future.result()
    if result is None:
        raise KinovaPolicyError(f'service {what} gave no answer')
    return result


def call_trigger(node: Node, service: str, timeout: float = 10.0) -> dict[str, Any]:
    """Call a ``std_srvs/Trigger`` service; return its JSON message."""
    client: Any = node.create_client(Trigger, service)
    try:
        if not client.wait_for_service(timeout_sec=timeout):
            raise KinovaPolicyError(f'service {service} not available after {timeout:.0f} s')
        future = client.call_async(Trigger.Request())
        wait_for(future.done, timeout, f'the answer of {service}')
        result = future.result()
        if result is None or not result.success:
            raise KinovaPolicyError(f'{service} failed: {getattr(result, "message", None)}')
        return dict(json.loads(result.message))
    finally:
        node.destroy_client(client)
