"""The harness node of the DDS evaluation (``sim.ros.eval_recorder``), callbacks fed directly."""

from collections.abc import Iterator
import json

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from kinova_policy_ros.core import kinematics as kin
from kinova_policy_ros.sim.ros import eval_recorder
from kinova_policy_ros.sim.ros.eval_recorder import EvalRecorder
import pytest
import rclpy
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

pytestmark = pytest.mark.dds


@pytest.fixture
def recorder() -> Iterator[EvalRecorder]:
    context = rclpy.Context()
    rclpy.init(context=context)
    node = EvalRecorder(context=context)
    try:
        yield node
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=context)


def _joints(names: list[str], with_velocity: bool = True) -> JointState:
    msg = JointState()
    msg.name = names
    msg.position = [float(i) for i in range(len(names))]
    msg.velocity = [10.0 + i for i in range(len(names))] if with_velocity else []
    return msg


def test_joint_index_maps_by_name():
    names = ('gripper', *reversed(kin.JOINT_NAMES))
    assert eval_recorder.joint_index(names) == [7, 6, 5, 4, 3, 2, 1]
    assert eval_recorder.joint_index(kin.JOINT_NAMES[:6]) is None


def test_joint_states_are_kept_in_joint_order(recorder: EvalRecorder):
    names = ['gripper', *reversed(kin.JOINT_NAMES)]
    recorder._on_joints(_joints(names))
    recorder._on_joints(_joints(names, with_velocity=False))
    recorder._on_joints(_joints(list(kin.JOINT_NAMES[:6])))  # joint_7 missing: ignored
    (s1, q1, dq1), (s2, q2, dq2) = recorder.snapshot()['joints']
    assert q1 == q2 == [7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]
    assert dq1 == [17.0, 16.0, 15.0, 14.0, 13.0, 12.0, 11.0] and dq2 == []
    assert s1 <= s2 and recorder.joint_states_seen == 2


def test_tasks_commands_and_diagnostics_are_recorded_until_cleared(recorder: EvalRecorder):
    recorder._on_task(String(data=json.dumps({'episode': 2, 'distance': 0.1})))
    recorder._on_task(String(data='not json'))  # ignored
    recorder._on_command(JointTrajectory())
    recorder._on_predicted(JointTrajectory())
    recorder._on_predicted(JointTrajectory())
    status = DiagnosticStatus(name=eval_recorder.POLICY_STATUS_NAME, values=[
        KeyValue(key='state', value='disabled'), KeyValue(key='enabled', value='false'),
    ])
    other = DiagnosticStatus(name='some_driver: status', values=[KeyValue(key='state', value='x')])
    recorder._on_diagnostics(DiagnosticArray(status=[other, status]))
    snap = recorder.snapshot()
    assert [t for _, t in snap['tasks']] == [{'episode': 2, 'distance': 0.1}]
    assert len(snap['commands']) == 1 and snap['predicted'] == 2
    assert [d for _, d in snap['diagnostics']] == [{'state': 'disabled', 'enabled': 'false'}]
    assert recorder.last_task == {'episode': 2, 'distance': 0.1}
    assert recorder.last_diag_values() == {'state': 'disabled', 'enabled': 'false'}
    snap['tasks'].clear()  # a copy
    assert len(recorder.snapshot()['tasks']) == 1
    recorder.clear()
    empty = recorder.snapshot()
    assert empty == {'joints': [], 'commands': [], 'tasks': [], 'diagnostics': [], 'predicted': 0}
    # the latest task and diagnostics outlive an episode: the next one waits on them
    assert recorder.last_task is not None and recorder.last_diag is not None


def test_service_clients_name_the_nodes(recorder: EvalRecorder):
    assert recorder.enable_client.srv_name == '/kinova_policy/enable'
    assert recorder.reset_client.srv_name == '/kinova_policy/reset'
    assert recorder.sim_params_client.srv_name == '/sim_node/set_parameters'
    assert recorder.last_diag_values() is None
