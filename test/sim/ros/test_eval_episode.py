"""
One episode of the DDS evaluation (``sim.ros.eval_episode``).

The record -> result adapter, and the waits of the episode steps on a stand-in for the harness
node (no DDS).
"""

import json
import threading
import time

from builtin_interfaces.msg import Duration
from kinova_policy_ros.core import kinematics as kin
from kinova_policy_ros.core.errors import KinovaPolicyError
from kinova_policy_ros.sim.eval_metrics import summarize
from kinova_policy_ros.sim.eval_records import TRACE_KEYS
from kinova_policy_ros.sim.ros import eval_episode
import pytest
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint


def _msg(points: list[tuple[float, float]]) -> JointTrajectory:
    msg = JointTrajectory()
    msg.joint_names = list(kin.JOINT_NAMES)
    for t, p in points:
        pt = JointTrajectoryPoint()
        pt.positions = [p] * 7
        pt.velocities = [0.0] * 7
        pt.time_from_start = Duration(sec=int(t), nanosec=round((t % 1) * 1e9))
        msg.points.append(pt)
    return msg


def test_episode_result_and_summary_from_a_record():
    s = 1_000_000_000
    t0, end = 10 * s, 12 * s
    q = [0.0, 0.3, 3.1, -2.2, 0.0, 1.0, 1.5]
    record = {
        'joints': [(t0 + k * s // 100, q, [0.0] * 7) for k in range(-5, 201)],
        'commands': [(t0 + s // 10, _msg([(0.1, 0.2), (0.2, 0.3)])), (end + s, _msg([(0.1, 0)]))],
        'tasks': [
            (t0 + s // 2, {'episode': 3, 'distance': 0.2, 'ee': [0.4, 0.0, 0.4]}),
            (t0 + s // 2, {'episode': 2, 'distance': 0.0, 'ee': [0.0, 0.0, 0.0]}),  # old one
            (t0 + s, {'episode': 3, 'distance': 0.025, 'ee': [0.5, 0.0, 0.1]}),
            (t0 + 3 * s // 2, {'episode': 3, 'distance': 0.04, 'ee': [0.5, 0.0, 0.1]}),
        ],
        'diagnostics': [(t0 + s, {'state': 'stale input', 'detail': 'rgb'})],
        'predicted': 1,
    }
    diag_after = {'commands_published': '9', 'inference_latency_p50_ms': '12.5'}
    e = eval_episode.episode_result(
        7, {'seed': 7, 'episode': 3, 'target': [0.5, 0.0, 0.05]}, record, t0, end,
        diag_after, {'commands_published': '8'},
    )
    assert e['final_distance'] == 0.04 and e['min_distance'] == 0.025
    assert not e['success_3cm'] and e['success_5cm']
    assert e['time_to_success_s'] == pytest.approx(1.0)
    assert e['commands_received'] == 1 and e['commands_published'] == 1
    assert e['commands'][0]['t_s'] == pytest.approx(0.1)
    assert len(e['measured']['t_s']) == 201 and e['measured']['t_s'][0] == 0.0
    assert e['ee_path'] == [[0.4, 0.0, 0.4], [0.5, 0.0, 0.1], [0.5, 0.0, 0.1]]
    assert e['policy_problem_reports'] == 1 and e['first_policy_problem'] == 'stale input: rgb'
    assert e['inference_latency_p50_ms'] == 12.5 and e['inference_latency_p99_ms'] is None
    assert e['target'] == [0.5, 0.0, 0.05] and e['predicted_received'] == 1
    with pytest.raises(KinovaPolicyError, match='seed 7: no /sim_node/task_state'):
        eval_episode.episode_result(7, {'episode': 4}, record, t0, end, None, None)

    other = dict(e, seed=8, final_distance=0.01, success_3cm=True, chunk_velocity_jumps=[1, 3])
    summary = summarize([e, other], 30.0, {'inference_latency_p99_ms': '40.0'})
    assert summary['success_3cm'] == 0.5 and summary['success_5cm'] == 1.0
    assert summary['mean_final_distance'] == pytest.approx(0.025)
    assert summary['boundary_jump_median'] == 2.0 and summary['chunk_boundaries'] == 2
    assert summary['latency_p99_ms'] == 40.0 and summary['latency_p50_ms'] is None
    assert [p['seed'] for p in summary['per_episode']] == [7, 8]
    assert not set(TRACE_KEYS) & set(summary['per_episode'][0])
    json.dumps(summary, allow_nan=False)


def test_command_dict_keeps_the_message_joint_order_and_times():
    msg = _msg([(0.5, 0.1), (1.25, 0.2)])
    msg.joint_names = list(reversed(kin.JOINT_NAMES))
    c = eval_episode.command_dict(3.0, msg)
    assert c['t_s'] == 3.0 and c['joint_names'] == list(reversed(kin.JOINT_NAMES))
    assert c['time_from_start'] == pytest.approx([0.5, 1.25])
    assert c['positions'] == [[0.1] * 7, [0.2] * 7] and c['stamp_ns'] == 0


class FakeRecorder:
    """What the waits read of ``EvalRecorder``: the last diagnostics and the clock."""

    def __init__(self) -> None:
        self.last_diag: tuple[int, dict[str, str]] | None = None

    def now_ns(self) -> int:
        return time.monotonic_ns()


def test_wait_disabled_needs_a_report_after_the_window():
    rec = FakeRecorder()
    rec.last_diag = (5, {'enabled': 'false', 'state': 'disabled'})  # an old report
    with pytest.raises(KinovaPolicyError, match='kinova_policy to report disabled'):
        eval_episode.wait_disabled(rec, 10, lambda: None, timeout=0.1)  # type: ignore[arg-type]

    def report_later() -> None:
        time.sleep(0.2)
        rec.last_diag = (11, {'enabled': 'true', 'state': 'running'})
        time.sleep(0.2)
        rec.last_diag = (12, {'enabled': 'false', 'state': 'disabled'})

    thread = threading.Thread(target=report_later)
    thread.start()
    eval_episode.wait_disabled(rec, 10, lambda: None, timeout=30.0)  # type: ignore[arg-type]
    thread.join()
    assert rec.last_diag[0] == 12


def test_the_waits_stop_when_a_process_died():
    def dead() -> None:
        raise KinovaPolicyError('sim_node exited early with code 1')

    with pytest.raises(KinovaPolicyError, match='sim_node exited early'):
        eval_episode.wait_disabled(FakeRecorder(), 0, dead, timeout=30.0)  # type: ignore[arg-type]
    with pytest.raises(KinovaPolicyError, match='sim_node exited early'):
        eval_episode.run_for(30.0, dead)


def test_run_for_checks_the_processes_until_one_dies():
    checks = []

    def alive() -> None:
        checks.append(len(checks))
        if len(checks) == 3:
            raise KinovaPolicyError('policy_node exited early')

    with pytest.raises(KinovaPolicyError, match='policy_node exited early'):
        eval_episode.run_for(60.0, alive)
    assert checks == [0, 1, 2]  # polled again and again, stopped at the first failure
