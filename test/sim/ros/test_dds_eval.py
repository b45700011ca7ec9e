"""
The closed-loop evaluation over DDS (``sim.ros.dds_eval``), end to end.

The smoke test starts the real ``sim_node`` and ``policy_node`` processes with a tiny random
checkpoint. The parts have their own tests: ``test_processes``, ``test_services``,
``test_eval_recorder``, ``test_eval_episode`` (here) and ``test/sim/test_eval_metrics.py``,
``test/sim/test_eval_plots.py``.
"""

import itertools
import json
import math
import os
from pathlib import Path

from kinova_policy_ros.core import kinematics as kin
from kinova_policy_ros.core.errors import ConfigError, KinovaPolicyError
from kinova_policy_ros.sim import eval_metrics
from kinova_policy_ros.sim.ros import dds_eval, eval_episode, eval_recorder, processes
from kinova_policy_ros.testing.synthetic import make_random_checkpoint
import numpy as np
import pytest

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


def _assert_starts_on_the_running_command(commands: list[dict]) -> None:
    """Each command's first point lies on the one it replaces, up to the acceleration bound."""
    for a, b in itertools.pairwise(commands):
        times = np.asarray(a['time_from_start'])
        positions = np.asarray(a['positions'])
        t = b['t_s'] + b['time_from_start'][0] - a['t_s']  # b's first point on a's clock
        running = np.array([np.interp(t, times, positions[:, j]) for j in range(7)])
        first = np.asarray(b['positions'][0])
        # deviation allowed: the bound 8.6 rad/s² over the lead of the first point, plus a few
        # ms of transport difference between the two receipts at up to 1.4 rad/s
        lead = b['time_from_start'][0]
        allowed = 0.5 * kin.ACCELERATION_LIMITS * lead**2 + 1.4 * 0.01 + 0.01  # + linear interp
        gap = np.abs(kin.nearest_equivalent(first, running) - running)
        assert np.all(gap <= allowed), (gap, allowed)


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
        assert e['success_3cm'] == (e['final_distance'] <= 0.03)
        assert e['success_5cm'] == (e['final_distance'] <= 0.05)
        assert e['final_distance'] == e['distance_trace'][-1]
        assert e['min_distance'] == min(e['distance_trace'])
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
        # the hand-over (default spline): every command ends at rest (accepted under Jazzy's
        # allow_nonzero_velocity_at_trajectory_end: false), carries look-ahead points past the
        # 6 executed ones, and starts on the path of the command it replaces
        for c in e['commands']:
            assert c['velocities'][-1] == [0.0] * 7
            assert len(c['positions']) > 6
        _assert_starts_on_the_running_command(e['commands'])
        assert e['speed_dips'] is not None and e['jerk_rms'] is not None
        assert e['handover_dips'] is not None and e['handover_dips'] <= e['speed_dips']
        assert e['inference_latency_p50_ms'] > 0
        # receipt times: in the recording window, in order
        for times in (e['measured']['t_s'], e['task_t_s'], [c['t_s'] for c in e['commands']]):
            assert times == sorted(times) and 0.0 <= times[0] and times[-1] <= e['duration_s']
        assert e['duration_s'] >= 2.0  # at least the requested window
        assert len(e['task_t_s']) == len(e['distance_trace']) == len(e['ee_path'])
        # the measured joints moved under the policy's commands and stayed within Gen3 limits
        q = np.asarray(e['measured']['positions'])
        assert q.shape[1] == 7 and q.shape[0] == len(e['measured']['t_s']) > 20  # ~200 sent
        assert kin.within_limits(q, tolerance=1e-3).all()
        moved = np.ptp(kin.unwrap_continuous(q), axis=0)
        assert moved.max() > 1e-3, moved
        assert len(e['ee_path']) >= 5 and all(len(p) == 3 for p in e['ee_path'])  # ~20 sent

    s = results['summary']
    assert s['episodes'] == 2 and s['seeds'] == [5, 6]
    final = [e['final_distance'] for e in episodes]
    assert s['success_3cm'] == np.mean([d <= 0.03 for d in final])
    assert s['success_5cm'] == np.mean([d <= 0.05 for d in final])
    assert s['mean_final_distance'] == pytest.approx(np.mean(final))
    assert s['median_final_distance'] == pytest.approx(
        np.median([e['final_distance'] for e in episodes])
    )
    assert s['chunk_boundaries'] == sum(len(e['chunk_velocity_jumps']) for e in episodes)
    assert s['latency_p99_ms'] >= s['latency_p50_ms'] > 0
    assert 0.0 <= s['boundary_jump_median'] <= s['boundary_jump_p95'] <= s['boundary_jump_max']
    assert s['commands_received'] == sum(e['commands_received'] for e in episodes)
    assert s['episode_duration_s'] == pytest.approx(np.mean([e['duration_s'] for e in episodes]))
    # the wall time covers the start-up and both episodes
    assert s['wall_time_s'] >= s['startup_s'] + sum(e['duration_s'] for e in episodes)

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
def test_closed_loop_with_the_kinova_vision_camera(tiny_checkpoint: Path, tmp_path: Path):
    """The Gen3 as shipped: 1280x720 rgb8 colour + 480x270 16UC1 depth, 8 joint states."""
    out = tmp_path / 'eval'
    results = dds_eval.evaluate_over_dds(
        tiny_checkpoint,
        [7],
        out,
        duration_s=2.0,
        policy_params={'device': 'cpu'},
        camera_profile='kinova_vision',
        progress=False,
        plots=False,
    )
    sim_log = (out / 'sim_node.log').read_text()
    policy_log = (out / 'policy_node.log').read_text()
    assert 'simulated Gen3 ready' in sim_log and 'ready: checkpoint' in policy_log
    assert 'invalid input' not in policy_log and 'observation rejected' not in policy_log
    procs = results['summary']['processes']
    assert [p['returncode'] for p in procs.values()] == [0, 0], procs
    (e,) = results['episodes']
    # the node planned from the real-size streams and the simulated controller took every plan
    assert e['commands_received'] >= 2 and e['commands_rejected_by_sim'] == 0
    assert all(c['joint_names'] == list(kin.JOINT_NAMES) for c in e['commands'])
    s = results['summary']
    assert s['success_3cm'] == float(e['final_distance'] <= 0.03)  # at the TCP
    assert s['success_3cm_flange'] is not None and s['median_final_distance_flange'] > 0


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


def test_the_parts_stay_importable_from_dds_eval():
    assert dds_eval.ros_param_arg is processes.ros_param_arg
    assert dds_eval.sim_command is processes.sim_command
    assert dds_eval.ChildProcess is processes.ChildProcess
    assert dds_eval.EvalRecorder is eval_recorder.EvalRecorder
    assert dds_eval.episode_result is eval_episode.episode_result
    assert dds_eval.chunk_velocity_jumps is eval_metrics.chunk_velocity_jumps
    assert dds_eval.summarize is eval_metrics.summarize
    assert dds_eval.TRACE_KEYS == ('ee_path', 'task_t_s', 'distance_trace', 'measured', 'commands')
    assert all(hasattr(dds_eval, name) for name in dds_eval.__all__)


def test_results_are_written_atomically_as_strict_json(tmp_path: Path):
    path = dds_eval.write_results(tmp_path / 'closed_loop.json', {'summary': {'episodes': 1}})
    assert json.loads(path.read_text()) == {'summary': {'episodes': 1}}
    assert sorted(p.name for p in tmp_path.iterdir()) == ['closed_loop.json']
    with pytest.raises(ValueError, match='not JSON compliant'):
        dds_eval.write_results(tmp_path / 'nan.json', {'x': float('nan')})
    assert not (tmp_path / 'nan.json').exists()
