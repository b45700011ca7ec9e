"""Waiting on other nodes (``sim.ros.services``): conditions, service calls."""

import json
import threading
from typing import Any

from kinova_policy_ros.core.errors import KinovaPolicyError
from kinova_policy_ros.sim.ros import services
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from std_srvs.srv import Trigger


def test_wait_for_returns_once_the_condition_holds():
    calls = []

    def third_time() -> bool:
        calls.append(1)
        return len(calls) == 3

    services.wait_for(third_time, 60.0, 'the third call')
    assert len(calls) == 3
    with pytest.raises(KinovaPolicyError, match='timed out after 0 s waiting for nothing'):
        services.wait_for(lambda: False, 0.05, 'nothing')


class FakeFuture:
    def __init__(self, result: Any, done_after: int = 0) -> None:
        self._result = result
        self._polls = done_after

    def done(self) -> bool:
        self._polls -= 1
        return self._polls < 0

    def result(self) -> Any:
        return self._result


class FakeClient:
    """A service client whose service shows up after ``available_after`` polls."""

    def __init__(self, answer: Any, available_after: int = 0, done_after: int = 0) -> None:
        self.answer = answer
        self.available_after = available_after
        self.done_after = done_after
        self.requests: list[Any] = []

    def wait_for_service(self, timeout_sec: float) -> bool:
        self.available_after -= 1
        return self.available_after < 0

    def call_async(self, request: Any) -> FakeFuture:
        self.requests.append(request)
        return FakeFuture(self.answer, self.done_after)


def test_call_service_waits_for_the_service_and_the_answer():
    client = FakeClient('answer', available_after=2, done_after=3)
    checks = []
    assert services.call_service(client, 'req', '/x', lambda: checks.append(1), 60.0) == 'answer'
    assert client.requests == ['req'] and len(checks) >= 2 + 3


def test_call_service_errors_name_the_service():
    with pytest.raises(KinovaPolicyError, match='service /x not available after 0 s'):
        services.call_service(FakeClient(1, available_after=10**9), 'r', '/x', timeout=0.05)
    with pytest.raises(KinovaPolicyError, match='service /y gave no answer'):
        services.call_service(FakeClient(None), 'r', '/y', timeout=60.0)

    def dead() -> None:
        raise KinovaPolicyError('sim_node exited early')

    with pytest.raises(KinovaPolicyError, match='sim_node exited early'):
        services.call_service(FakeClient(1, available_after=10**9), 'r', '/z', dead, 60.0)


@pytest.mark.dds
def test_call_trigger_over_dds():
    context = rclpy.Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    try:
        server = rclpy.create_node('trigger_server', context=context)
        client = rclpy.create_node('trigger_client', context=context)

        def answer_ok(request: Any, response: Any) -> Any:
            response.success = True
            response.message = json.dumps({'seed': 4, 'episode': 2})
            return response

        def answer_no(request: Any, response: Any) -> Any:
            response.success = False
            response.message = 'no episode'
            return response

        server.create_service(Trigger, '/test_services/ok', answer_ok)
        server.create_service(Trigger, '/test_services/no', answer_no)
        executor.add_node(server)
        executor.add_node(client)
        thread = threading.Thread(target=executor.spin, daemon=True)
        thread.start()
        assert services.call_trigger(client, '/test_services/ok', 60.0) == {
            'seed': 4, 'episode': 2
        }
        with pytest.raises(KinovaPolicyError, match='/test_services/no failed: no episode'):
            services.call_trigger(client, '/test_services/no', 60.0)
        with pytest.raises(KinovaPolicyError, match='/test_services/absent not available'):
            services.call_trigger(client, '/test_services/absent', 0.2)
    finally:
        executor.shutdown(timeout_sec=5.0)
        rclpy.try_shutdown(context=context)
