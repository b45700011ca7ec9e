"""The metrics of a closed-loop evaluation (``sim.eval_metrics``): pure functions, no ROS."""

import json

from hypothesis import given
from hypothesis import strategies as st
from kinova_policy_ros.core import kinematics as kin
from kinova_policy_ros.core.errors import KinovaPolicyError
from kinova_policy_ros.sim import eval_metrics as em
from kinova_policy_ros.sim.trajectory import TrajectoryCommand
import pytest

S = 1_000_000_000


def _command(t_s: float, times: list[float], pos: list[float], vel: list[float], n: int = 7):
    return {
        't_s': t_s,
        'joint_names': list(kin.JOINT_NAMES[:n]),
        'time_from_start': times,
        'positions': [[p] * n for p in pos],
        'velocities': [[v] * n for v in vel],
        'stamp_ns': 0,
    }


def test_chunk_velocity_jump_is_the_desired_velocity_step_at_a_replacement():
    measured = {
        't_s': [0.0, 0.5],
        'positions': [[0.0] * 7, [0.1] * 7],
        'velocities': [[0.2] * 7, [0.05] * 7],
    }
    commands = [
        # from (0, 0.2 rad/s) to (0.2, 0.2 rad/s) in 1 s: 0.2 rad/s all along; ends at rest
        _command(0.0, [1.0, 2.0, 3.0], [0.2, 0.4, 0.5], [0.2, 0.2, 0.0]),
        # replaces it at 0.5 s, anchored at the measured velocity 0.05 rad/s
        _command(0.5, [0.5], [0.2], [0.0]),
        _command(0.6, [0.5], [0.2], [0.0], n=6),  # rejected: six joints
    ]
    jumps, rejected = em.chunk_velocity_jumps(commands, measured)
    assert jumps == pytest.approx([0.15]) and rejected == 1


def test_chunk_velocity_jumps_without_measurements_replay_nothing():
    commands = [_command(0.0, [1.0], [0.2], [0.0]), _command(0.5, [1.0], [0.3], [0.0])]
    assert em.chunk_velocity_jumps(commands, {}) == ([], 0)
    # a command before the first measurement is anchored at the first one
    measured = {'t_s': [1.0], 'positions': [[0.0] * 7], 'velocities': [[0.0] * 7]}
    jumps, rejected = em.chunk_velocity_jumps(commands, measured)
    assert len(jumps) == 1 and rejected == 0


def _cmd(value: float, stamp_ns: int = 0) -> TrajectoryCommand:
    return TrajectoryCommand(
        joint_names=list(kin.JOINT_NAMES),
        time_from_start=[0.1, 0.2],
        positions=[[value] * 7, [value + 0.1] * 7],
        velocities=[[0.0] * 7, [0.0] * 7],
        stamp_ns=stamp_ns,
    )


def test_command_entry_is_json_friendly():
    entry = em.command_entry(0.25, _cmd(0.5, stamp_ns=7))
    assert entry == {
        't_s': 0.25,
        'joint_names': list(kin.JOINT_NAMES),
        'time_from_start': [0.1, 0.2],
        'positions': [[0.5] * 7, [0.6] * 7],
        'velocities': [[0.0] * 7, [0.0] * 7],
        'stamp_ns': 7,
    }
    json.dumps(entry, allow_nan=False)


def _record(t0: int, end: int) -> em.EpisodeRecord:
    q = [0.0, 0.3, 3.1, -2.2, 0.0, 1.0, 1.5]
    return {
        'joints': [(t0 + k * S // 100, q, [0.0] * 7) for k in range(-5, 201)],
        'commands': [(t0 + S // 10, _cmd(0.2)), (t0 + S // 2, _cmd(0.3)), (end + S, _cmd(0.0))],
        'tasks': [
            (t0 - S, {'episode': 3, 'distance': 0.001, 'ee': [0.0] * 3}),  # before enable
            (t0 + S // 2, {'episode': 3, 'distance': 0.2, 'ee': [0.4, 0.0, 0.4],
                           'trajectories_rejected': 1}),
            (t0 + S, {'episode': 3, 'distance': 0.02, 'ee': [0.5, 0.0, 0.1]}),
            (t0 + 3 * S // 2, {'episode': 3, 'distance': 0.025, 'ee': [0.5, 0.0, 0.1],
                               'trajectories_rejected': 3, 'last_rejection': 'missing joint_7',
                               'target': [0.5, 0.0, 0.08]}),
        ],
        'diagnostics': [
            (t0 + S // 4, {'state': 'running'}),
            (t0 + S, {'state': 'invalid input', 'detail': 'depth'}),
            (end + S, {'state': 'error', 'detail': 'late'}),
        ],
        'predicted': 4,
    }


def test_episode_metrics_of_a_record():
    t0, end = 10 * S, 12 * S
    diag_after = {'commands_published': '12', 'points_dropped_for_latency': '3',
                  'inference_latency_p99_ms': 'nan'}
    diag_before = {'commands_published': '10'}
    e = em.episode_metrics(5, {'episode': 3}, _record(t0, end), t0, end, diag_after, diag_before)
    assert e['seed'] == 5 and e['sim_episode'] == 3
    assert e['target'] == [0.5, 0.0, 0.08]  # from the last task state: no target in reset_info
    assert e['final_distance'] == 0.025 and e['min_distance'] == 0.02
    assert e['success_3cm'] and e['success_5cm']
    assert e['time_to_success_s'] == pytest.approx(1.0)
    assert e['duration_s'] == pytest.approx(2.0)
    assert e['commands_received'] == 2 and [c['t_s'] for c in e['commands']] == [0.1, 0.5]
    assert e['commands_published'] == 2 and e['points_dropped_for_latency'] == 3
    assert e['commands_rejected_by_sim'] == 2 and e['last_rejection'] == 'missing joint_7'
    assert e['predicted_received'] == 4
    assert len(e['chunk_velocity_jumps']) == 1 and e['commands_rejected_in_replay'] == 0
    assert e['max_chunk_velocity_jump'] == max(e['chunk_velocity_jumps'])
    assert e['inference_latency_p50_ms'] is None and e['inference_latency_p99_ms'] is None
    assert e['policy_problem_reports'] == 1
    assert e['first_policy_problem'] == 'invalid input: depth'
    assert e['task_t_s'] == pytest.approx([0.5, 1.0, 1.5])
    assert e['distance_trace'] == [0.2, 0.02, 0.025]
    assert len(e['measured']['t_s']) == 201 and e['measured']['velocities'][0] == [0.0] * 7
    json.dumps(e, allow_nan=False)


def test_episode_metrics_need_a_task_state_of_the_episode():
    t0, end = 10 * S, 12 * S
    with pytest.raises(KinovaPolicyError, match=r'seed 5: no /sim_node/task_state .* episode 4'):
        em.episode_metrics(5, {'episode': 4}, _record(t0, end), t0, end, None, None)


def test_measured_trace_drops_velocities_unless_every_sample_has_them():
    joints = [(S, [0.0] * 7, [0.1] * 7), (2 * S, [0.1] * 7, [])]
    trace = em.measured_trace(joints, S)
    assert trace['t_s'] == [0.0, 1.0] and trace['velocities'] == []
    assert trace['joint_names'] == list(kin.JOINT_NAMES)
    assert em.measured_trace(joints[:1], 0)['velocities'] == [[0.1] * 7]


def test_counters_and_numbers_from_diagnostics():
    assert em.float_or_none('1.5') == 1.5
    assert em.float_or_none('inf') is None and em.float_or_none('x') is None
    assert em.float_or_none(None) is None
    assert em.counter_delta('n', {'n': '7'}, {'n': '3'}) == 4
    assert em.counter_delta('n', {'n': '7'}, None) == 7
    assert em.counter_delta('n', {}, {'n': '3'}) is None
    problems = em.policy_problems([(0, {'state': 'stale input', 'detail': 'rgb'}),
                                   (1, {'state': 'running'}), (2, {'state': 'error'})])
    assert problems == ['stale input: rgb', 'error: ']


def _episode(seed: int, final: float, jumps: list[float], duration: float = 2.0) -> dict:
    return {
        'seed': seed,
        'final_distance': final,
        'success_3cm': final <= em.SUCCESS_3CM,
        'success_5cm': final <= em.SUCCESS_5CM,
        'commands_received': 3,
        'policy_problem_reports': 1,
        'chunk_velocity_jumps': jumps,
        'duration_s': duration,
        'measured': {'t_s': []},
        'ee_path': [],
    }


def test_summary_aggregates_the_episodes():
    episodes = [_episode(1, 0.01, [1.0, 3.0]), _episode(2, 0.04, [2.0], 3.0),
                _episode(3, 0.2, [])]
    s = em.summarize(episodes, 30.0, {'inference_latency_p50_ms': '12.0'}, startup_s=4.0)
    assert s['episodes'] == 3 and s['seeds'] == [1, 2, 3]
    assert s['success_3cm'] == pytest.approx(1 / 3) and s['success_5cm'] == pytest.approx(2 / 3)
    assert s['median_final_distance'] == 0.04
    assert s['mean_final_distance'] == pytest.approx(0.25 / 3)
    assert s['commands_received'] == 9 and s['policy_problem_reports'] == 3
    assert s['chunk_boundaries'] == 3 and s['boundary_jump_median'] == 2.0
    assert s['boundary_jump_max'] == 3.0
    assert s['boundary_jump_p95'] == pytest.approx(2.9)
    assert s['latency_p50_ms'] == 12.0 and s['latency_p99_ms'] is None
    assert s['episode_duration_s'] == pytest.approx(7 / 3)
    assert (s['startup_s'], s['wall_time_s']) == (4.0, 30.0)
    assert [set(p) & {'measured', 'ee_path', 'chunk_velocity_jumps'} for p in s['per_episode']] \
        == [set()] * 3
    assert 'success_3cm' in s['per_episode'][0]


def test_summary_aggregates_the_smoothness_figures():
    episodes = [
        dict(_episode(1, 0.01, [1.0]), speed_dips=2, handover_dips=1, jerk_rms=10.0,
             time_to_success_s=3.0),
        dict(_episode(2, 0.2, [1.0]), speed_dips=0, handover_dips=0, jerk_rms=30.0,
             time_to_success_s=None),
        dict(_episode(3, 0.02, []), speed_dips=None, jerk_rms=None, time_to_success_s=5.0),
    ]
    s = em.summarize(episodes, 30.0)
    assert s['speed_dips'] == 2 and s['handover_dips'] == 1  # the episodes that measured it
    assert s['jerk_rms_median'] == 20.0 and s['time_to_target_median_s'] == 4.0
    none = em.summarize([dict(_episode(1, 0.01, []), speed_dips=None)], 1.0)
    assert none['speed_dips'] is None and none['jerk_rms_median'] is None
    assert none['handover_dips'] is None


def test_summary_of_no_episodes_has_no_rates():
    s = em.summarize([], 1.0)
    assert s['episodes'] == 0 and s['success_3cm'] is None and s['boundary_jump_max'] is None
    assert s['mean_final_distance'] is None and s['chunk_boundaries'] == 0
    json.dumps(s, allow_nan=False)


def test_progress_and_summary_lines():
    e = dict(_episode(4, 0.0123, [0.5]), min_distance=0.01, max_chunk_velocity_jump=0.5,
             inference_latency_p50_ms=9.25)
    line = em.progress_line(e, 2, 5)
    assert line.startswith('closed loop over DDS [2/5] seed 4: final distance 12.3 mm')
    assert 'success within 3 cm' in line and line.endswith('latency p50 9.2 ms')
    assert 'speed dips None (None not in the plans)' in line  # not measured in this episode
    e['speed_dips'], e['handover_dips'] = 3, 1
    assert 'speed dips 3 (1 not in the plans), latency' in em.progress_line(e, 2, 5)
    e['inference_latency_p50_ms'] = None
    assert 'latency' not in em.progress_line(e, 2, 5)
    s = em.summarize([e, _episode(5, 0.1001, [])], 12.0)
    assert em.summary_line(s) == (
        'closed loop over DDS: 2 episodes, success within 3 cm 50% (5 cm 50%), '
        'median final distance 56.2 mm, wall time 12.0 s'
    )


def test_success_is_reported_at_the_tcp_and_at_the_flange():
    """``success_3cm`` is the task state's TCP distance; ``*_flange`` its flange distance."""
    t0, s = 1_000_000_000, 1_000_000_000

    def record(tcp: float, flange: float) -> em.EpisodeRecord:
        task = {'episode': 0, 'distance': tcp, 'distance_flange': flange, 'ee': [0.5, 0.0, 0.2]}
        return {'joints': [], 'commands': [], 'tasks': [(t0 + s, task)], 'diagnostics': [],
                'predicted': 0}

    near = em.episode_metrics(1, {'episode': 0}, record(0.01, 0.115), t0, t0 + 2 * s, None, None)
    assert (near['final_distance'], near['success_3cm'], near['success_5cm']) == (0.01, True, True)
    assert near['final_distance_flange'] == 0.115
    assert near['success_3cm_flange'] is False and near['success_5cm_flange'] is False
    far = em.episode_metrics(2, {'episode': 0}, record(0.04, 0.02), t0, t0 + 2 * s, None, None)
    assert far['success_3cm'] is False and far['success_3cm_flange'] is True
    summary = em.summarize([near, far], 1.0)
    assert summary['success_3cm'] == 0.5 and summary['success_3cm_flange'] == 0.5
    assert summary['success_5cm'] == 1.0 and summary['success_5cm_flange'] == 0.5
    assert summary['median_final_distance_flange'] == pytest.approx(0.0675)
    assert 'at the flange 50% within 3 cm' in em.summary_line(summary)
    assert {'success_3cm_flange', 'final_distance_flange'} <= set(summary['per_episode'][0])
    # a task state without the flange distance (an older simulator): no flange figures
    old_record = record(0.01, 0.1)
    old_record['tasks'][0][1].pop('distance_flange')
    old = em.episode_metrics(3, {'episode': 0}, old_record, t0, t0 + 2 * s, None, None)
    assert old['final_distance_flange'] is None and old['success_3cm_flange'] is None
    assert em.summarize([old], 1.0)['success_3cm_flange'] is None


@pytest.mark.parametrize(
    ('k', 'n', 'lo', 'hi'),
    [
        (0, 10, 0.0, 0.2775),
        (1, 10, 0.0179, 0.4042),
        (5, 10, 0.2366, 0.7634),
        (10, 10, 0.7225, 1.0),
        (14, 20, 0.4810, 0.8545),
        (0, 2, 0.0, 0.6576),
    ],
)
def test_wilson_interval_known_values(k, n, lo, hi):
    assert em.wilson_interval(k, n) == pytest.approx((lo, hi), abs=5e-5)


def test_wilson_interval_z_and_errors():
    assert em.wilson_interval(3, 10, z=0.0) == pytest.approx((0.3, 0.3))
    narrow, wide = em.wilson_interval(7, 20, z=1.0), em.wilson_interval(7, 20, z=2.576)
    assert wide[0] < narrow[0] < 0.35 < narrow[1] < wide[1]
    with pytest.raises(ValueError, match=r'wilson_interval: .* got 3/2'):
        em.wilson_interval(3, 2)
    with pytest.raises(ValueError, match=r'got 0/0'):
        em.wilson_interval(0, 0)
    with pytest.raises(ValueError, match=r'got -1/5'):
        em.wilson_interval(-1, 5)


@given(st.integers(1, 500).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_interval_holds_the_rate_inside_zero_one(kn):
    k, n = kn
    lo, hi = em.wilson_interval(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0
    lo2, hi2 = em.wilson_interval(n - k, n)  # symmetric in successes and failures
    assert lo2 == pytest.approx(1 - hi, abs=1e-12) and hi2 == pytest.approx(1 - lo, abs=1e-12)
