"""sim/eval_records.py: the typed records say exactly what the metrics produce."""

from typing import get_type_hints

from kinova_policy_ros.core import kinematics as kin
from kinova_policy_ros.sim import eval_metrics as em
from kinova_policy_ros.sim import eval_records as er
from kinova_policy_ros.sim.trajectory import TrajectoryCommand

S = 1_000_000_000


def _record(t0: int, end: int) -> er.EpisodeRecord:
    cmd = TrajectoryCommand(
        joint_names=list(kin.JOINT_NAMES),
        time_from_start=[0.1, 0.2],
        positions=[[0.2] * 7, [0.3] * 7],
        velocities=[[0.0] * 7, [0.0] * 7],
    )
    return {
        'joints': [(t0 + k * S // 100, [0.0] * 7, [0.0] * 7) for k in range(201)],
        'commands': [(t0 + S // 10, cmd), (t0 + S // 2, cmd)],
        'tasks': [(t0 + S, {'episode': 3, 'distance': 0.02, 'ee': [0.5, 0.0, 0.1]})],
        'diagnostics': [(t0 + S // 4, {'state': 'running'})],
        'predicted': 2,
    }


def test_an_episode_result_has_exactly_the_declared_keys_and_traces():
    t0, end = 10 * S, 12 * S
    e = em.episode_metrics(5, {'episode': 3}, _record(t0, end), t0, end, None, None)
    assert set(e) == set(get_type_hints(er.EpisodeResult))
    assert set(er.TRACE_KEYS) <= set(e)
    assert set(em.compact(e)).isdisjoint(er.TRACE_KEYS)
    assert set(e['measured']) == set(get_type_hints(er.MeasuredTrace))
    assert all(set(c) == set(get_type_hints(er.CommandEntry)) for c in e['commands'])


def test_a_summary_has_the_declared_keys():
    t0, end = 10 * S, 12 * S
    e = em.episode_metrics(5, {'episode': 3}, _record(t0, end), t0, end, None, None)
    s = em.summarize([e], 30.0, startup_s=1.5)
    required = set(er._SummaryFields.__required_keys__)
    assert required <= set(s) <= set(get_type_hints(er.Summary))
