"""
The closed-loop evaluation over DDS (``sim.dds_eval``) and its plots (``sim.eval_plots``).

The smoke test starts the real ``sim_node`` and ``policy_node`` processes with a tiny random
checkpoint; the other tests check the metrics and the plots on synthetic data (no DDS).
"""

import json
import math
import os
from pathlib import Path

from builtin_interfaces.msg import Duration
from kinova_policy_ros.core import kinematics as kin
from kinova_policy_ros.core.errors import ConfigError, KinovaPolicyError
from kinova_policy_ros.sim import eval_plots
from kinova_policy_ros.sim.ros import dds_eval
from kinova_policy_ros.testing.synthetic import make_random_checkpoint
import numpy as np
import pytest
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def _children() -> set[int]:
    """Pids of the live child processes of this process."""
    me = str(os.getpid())
    pids = set()
    for stat in Path('/proc').glob('[0-9]*/stat'):
        try:
            fields = stat.read_text().rsplit(')', 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[1] == me and fields[0] != 'Z':
            pids.add(int(stat.parent.name))
    return pids


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC


@pytest.fixture(scope='module')
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_random_checkpoint(
        tmp_path_factory.mktemp('ckpt') / 'tiny',
        image_hw=(24, 32),
        d_model=32,
        dim_feedforward=64,
        img_feat_dim=16,
        q_feat_dim=8,
        conv_channels=(8, 16),
        dt=1 / 15,
    )


@pytest.mark.dds
@pytest.mark.slow
def test_closed_loop_smoke_over_dds(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    children_before = _children()
    out = tmp_path / 'eval'
    results = dds_eval.evaluate_over_dds(
        tiny_checkpoint,
        [5, 6],
        out,
        duration_s=2.0,
        policy_params={'device': 'cpu'},
    )
    # both processes ran, as separate processes, and are gone (stopped cleanly by SIGINT)
    assert 'ready: checkpoint' in (out / 'policy_node.log').read_text()
    assert 'simulated Gen3 ready' in (out / 'sim_node.log').read_text()
    procs = results['summary']['processes']
    assert set(procs) == {'sim_node', 'policy_node'}
    assert procs['sim_node']['pid'] != procs['policy_node']['pid'] != os.getpid()
    assert [p['returncode'] for p in procs.values()] == [0, 0], procs
    assert not any(Path(f'/proc/{p["pid"]}').exists() for p in procs.values())
    assert _children() <= children_before
    printed = capsys.readouterr().out
    assert 'seed 5' in printed and 'seed 6' in printed

    episodes = results['episodes']
    assert [e['seed'] for e in episodes] == [5, 6]
    for e in episodes:
        assert set(e) >= {
            'seed', 'target', 'final_distance', 'min_distance', 'success_3cm', 'success_5cm',
            'time_to_success_s', 'commands_received', 'chunk_velocity_jumps',
            'max_chunk_velocity_jump', 'inference_latency_p50_ms', 'inference_latency_p99_ms',
            'ee_path', 'measured', 'commands',
        }
        assert len(e['target']) == 3 and 0.0 <= e['min_distance'] <= e['final_distance']
        assert e['success_5cm'] == (e['final_distance'] <= 0.05)
        # commands arrived, all 7 joints in controller order, positions and velocities
        assert e['commands_received'] >= 2 and len(e['commands']) == e['commands_received']
        # the node's count runs until it saw the disable: a plan may land after the window
        assert 0 <= e['commands_published'] - e['commands_received'] <= 2
        assert e['commands_rejected_by_sim'] == 0, e['last_rejection']
        for c in e['commands']:
            assert c['joint_names'] == list(kin.JOINT_NAMES)
            assert all(len(p) == 7 for p in c['positions'] + c['velocities'])
        assert len(e['chunk_velocity_jumps']) == e['commands_received'] - 1
        assert all(math.isfinite(j) and j >= 0 for j in e['chunk_velocity_jumps'])
        assert e['inference_latency_p50_ms'] > 0
        # the measured joints moved under the policy's commands and stayed within Gen3 limits
        q = np.asarray(e['measured']['positions'])
        assert q.shape[1] == 7 and q.shape[0] > 50  # 100 Hz for 2 s
        assert kin.within_limits(q, tolerance=1e-3).all()
        moved = np.ptp(kin.unwrap_continuous(q), axis=0)
        assert moved.max() > 1e-3, moved
        assert len(e['ee_path']) >= 10 and all(len(p) == 3 for p in e['ee_path'])

    s = results['summary']
    assert s['episodes'] == 2 and s['seeds'] == [5, 6]
    assert s['success_3cm'] in (0.0, 0.5, 1.0) and 0.0 <= s['success_5cm'] <= 1.0
    assert s['median_final_distance'] == pytest.approx(
        np.median([e['final_distance'] for e in episodes])
    )
    assert s['chunk_boundaries'] == sum(len(e['chunk_velocity_jumps']) for e in episodes)
    assert s['latency_p99_ms'] >= s['latency_p50_ms'] > 0
    assert 0.0 <= s['boundary_jump_median'] <= s['boundary_jump_p95'] <= s['boundary_jump_max']
    assert s['wall_time_s'] > 4.0

    saved = json.loads((out / 'closed_loop.json').read_text())
    assert saved['summary']['seeds'] == [5, 6]
    assert saved['episodes'][1]['measured']['positions'] == episodes[1]['measured']['positions']
    assert all('measured' not in e for e in saved['summary']['per_episode'])
    assert s['plots'] == saved['summary']['plots'] == [
        'closed_loop_success.png',
        'closed_loop_ee_paths.png',
        'closed_loop_joints_seed5.png',
        'closed_loop_joints_seed6.png',
    ]
    assert all(_is_png(out / name) for name in s['plots'])


@pytest.mark.dds
@pytest.mark.slow
def test_a_process_that_dies_early_is_reported_with_its_log(tmp_path: Path):
    children_before = _children()
    not_a_checkpoint = tmp_path / 'empty_ckpt'
    not_a_checkpoint.mkdir()
    with pytest.raises(KinovaPolicyError, match='policy_node exited early') as err:
        dds_eval.evaluate_over_dds(not_a_checkpoint, [1], tmp_path / 'eval', progress=False)
    assert 'cannot start' in str(err.value) and 'empty_ckpt' in str(err.value)
    assert _children() <= children_before  # the simulator was stopped too


def test_bad_arguments_raise_config_errors(tiny_checkpoint: Path, tmp_path: Path):
    with pytest.raises(ConfigError, match='seeds'):
        dds_eval.evaluate_over_dds(tiny_checkpoint, [], tmp_path)
    with pytest.raises(ConfigError, match='duration_s'):
        dds_eval.evaluate_over_dds(tiny_checkpoint, [1], tmp_path, duration_s=0.0)
    with pytest.raises(ConfigError, match='nope'):
        dds_eval.evaluate_over_dds(tmp_path / 'nope', [1], tmp_path)
    with pytest.raises(ConfigError, match='camera_rate_hz'):
        dds_eval.evaluate_over_dds(
            tiny_checkpoint, [1], tmp_path, sim_params={'camera_rate_hz': 'fast'}
        )


def test_ros_parameter_arguments_keep_their_type():
    assert dds_eval.ros_param_arg('enabled_on_start', False) == 'enabled_on_start:=false'
    assert dds_eval.ros_param_arg('camera_rate_hz', 20.0) == 'camera_rate_hz:=20.0'
    assert dds_eval.ros_param_arg('x', 1e-5) == 'x:=1.0e-05'
    assert dds_eval.ros_param_arg('seed', 3) == 'seed:=3'
    assert dds_eval.ros_param_arg('device', 'cpu') == 'device:="cpu"'
    assert dds_eval.ros_param_arg('v', [0.5, 1.0]) == 'v:=[0.5, 1.0]'
    with pytest.raises(ConfigError, match='finite'):
        dds_eval.ros_param_arg('x', float('nan'))
    with pytest.raises(ConfigError, match='unsupported'):
        dds_eval.ros_param_arg('x', {'a': 1})
    cmd = dds_eval.sim_command(4, {'image_width': 64, 'start_noise': 0.0})
    assert 'seed:=4' in cmd and 'image_width:=64' in cmd and 'start_noise:=0.0' in cmd


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
        # from (0, 0.2 rad/s) to (0.2, 0.2 rad/s) in 1 s: 0.2 rad/s all along
        _command(0.0, [1.0, 2.0], [0.2, 0.4], [0.2, 0.2]),
        # replaces it at 0.5 s, anchored at the measured velocity 0.05 rad/s
        _command(0.5, [0.5], [0.2], [0.0]),
        _command(0.6, [0.5], [0.2], [0.0], n=6),  # rejected: six joints
    ]
    jumps, rejected = dds_eval.chunk_velocity_jumps(commands, measured)
    assert jumps == pytest.approx([0.15]) and rejected == 1


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
    e = dds_eval.episode_result(
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
    with pytest.raises(KinovaPolicyError, match='seed 7: no /sim_node/task_state'):
        dds_eval.episode_result(7, {'episode': 4}, record, t0, end, None, None)

    other = dict(e, seed=8, final_distance=0.01, success_3cm=True, chunk_velocity_jumps=[1, 3])
    summary = dds_eval.summarize([e, other], 30.0, {'inference_latency_p99_ms': '40.0'})
    assert summary['success_3cm'] == 0.5 and summary['success_5cm'] == 1.0
    assert summary['mean_final_distance'] == pytest.approx(0.025)
    assert summary['boundary_jump_median'] == 2.0 and summary['chunk_boundaries'] == 2
    assert summary['latency_p99_ms'] == 40.0 and summary['latency_p50_ms'] is None
    assert [p['seed'] for p in summary['per_episode']] == [7, 8]
    assert not set(dds_eval.TRACE_KEYS) & set(summary['per_episode'][0])
    json.dumps(summary, allow_nan=False)


def _synthetic_episode(seed: int, success: bool) -> dict:
    t = np.linspace(0.0, 2.0, 201)
    q = np.tile(np.array([0.0, 0.3, 3.1, -2.2, 0.0, 1.0, 1.5]), (t.size, 1))
    q[:, 2] = kin.wrap_to_pi(3.1 + 0.2 * t)  # joint_3 crosses +pi -> -pi, as the driver reports
    q[:, 1] += 0.1 * np.sin(t)
    commands = [
        _command(float(tc), [0.1, 0.2, 0.3], [0.3, 0.31, 0.32], [0.1, 0.1, 0.0])
        for tc in (0.1, 0.5, 0.9)
    ]
    path = np.stack([0.4 + 0.05 * t, 0.01 * t, 0.4 - 0.1 * t], axis=1)
    return {
        'seed': seed,
        'target': [0.5, 0.02, 0.2],
        'final_distance': 0.01 if success else 0.12,
        'min_distance': 0.008 if success else 0.1,
        'success_3cm': success,
        'success_5cm': success,
        'ee_path': path.tolist(),
        'measured': {'joint_names': list(kin.JOINT_NAMES), 't_s': t.tolist(), 'positions': q},
        'commands': commands,
    }


def test_plots_of_synthetic_results(tmp_path: Path):
    results = {'episodes': [_synthetic_episode(1, True), _synthetic_episode(2, False)]}
    paths = [
        eval_plots.plot_success(results, tmp_path / 'success.png'),
        eval_plots.plot_ee_paths(results['episodes'], tmp_path / 'paths.png'),
        eval_plots.plot_commanded_vs_measured(
            results['episodes'][0], kin.JOINT_NAMES, tmp_path / 'sub' / 'joints.png'
        ),
        eval_plots.plot_commanded_vs_measured(
            results['episodes'][1], ['joint_3', 'joint_2'], tmp_path / 'two.png'
        ),
    ]
    assert all(_is_png(p) for p in paths)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'paths.png', 'sub', 'success.png', 'two.png'
    ]  # no temporary files left behind
    written = eval_plots.write_all(results, tmp_path / 'all', max_joint_plots=1)
    assert [p.name for p in written] == [
        'closed_loop_success.png', 'closed_loop_ee_paths.png', 'closed_loop_joints_seed1.png'
    ]
    assert all(_is_png(p) for p in written)
