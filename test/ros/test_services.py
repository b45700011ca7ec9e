"""Tests of kinova_policy_ros.ros.services: the ~/enable and ~/reset handlers."""

from collections.abc import Iterator

from kinova_policy_ros.ros.diagnostics import NodeStatus
from kinova_policy_ros.ros.services import ENABLE_SERVICE, RESET_SERVICE, ServiceHandlers
import pytest
import rclpy
from std_srvs.srv import SetBool, Trigger


class Recorder:
    """The node side of the handlers: a real enable switch, counted resets, logged lines."""

    def __init__(self, enabled: bool) -> None:
        self.status = NodeStatus(enabled)
        self.resets = 0
        self.lines: list[str] = []

    def request_reset(self) -> None:
        self.resets += 1

    def handlers(self, reset_on_enable: bool) -> ServiceHandlers:
        return ServiceHandlers(
            self.status.set_enabled, self.request_reset, reset_on_enable, self.lines.append
        )


def _enable(handlers: ServiceHandlers, data: bool) -> SetBool.Response:
    return handlers.on_enable(SetBool.Request(data=data), SetBool.Response())


def test_enable_and_disable_switch_commands_and_log_changes_only():
    rec = Recorder(enabled=False)
    handlers = rec.handlers(reset_on_enable=False)
    response = _enable(handlers, True)
    assert response.success and response.message == 'enabled'
    assert rec.status.enabled
    assert rec.lines == ['commands enabled by ~/enable']
    response = _enable(handlers, True)  # already on: answered, not logged
    assert response.success and response.message == 'enabled'
    assert rec.lines == ['commands enabled by ~/enable']
    response = _enable(handlers, False)
    assert response.success and response.message == 'disabled'
    assert not rec.status.enabled
    assert rec.lines[-1] == 'commands disabled by ~/enable' and len(rec.lines) == 2
    assert rec.resets == 0  # not an anchor-frame model: enabling keeps the buffer


def test_enabling_an_anchor_frame_model_resets_on_the_switch_on_only():
    rec = Recorder(enabled=False)
    handlers = rec.handlers(reset_on_enable=True)
    _enable(handlers, True)
    assert rec.resets == 1
    _enable(handlers, True)  # already on
    _enable(handlers, False)
    assert rec.resets == 1
    _enable(handlers, True)
    assert rec.resets == 2


def test_reset_requests_a_reset_each_call():
    rec = Recorder(enabled=True)
    handlers = rec.handlers(reset_on_enable=False)
    for n in (1, 2):
        response = handlers.on_reset(Trigger.Request(), Trigger.Response())
        assert response.success
        assert response.message == 'observation buffer will be reset at the next control step'
        assert rec.resets == n
    assert rec.status.enabled


@pytest.fixture
def context() -> Iterator[rclpy.Context]:
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        yield ctx
    finally:
        rclpy.try_shutdown(context=ctx)


def test_create_adds_both_services_under_the_node_name(context):
    node = rclpy.create_node('services_test', namespace='/arm', context=context)
    try:
        Recorder(enabled=False).handlers(False).create(node)
        assert ENABLE_SERVICE == '~/enable' and RESET_SERVICE == '~/reset'
        services = dict(node.get_service_names_and_types_by_node('services_test', '/arm'))
        assert services['/arm/services_test/enable'] == ['std_srvs/srv/SetBool']
        assert services['/arm/services_test/reset'] == ['std_srvs/srv/Trigger']
    finally:
        node.destroy_node()
