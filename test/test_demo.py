"""The demo pipeline: its profiles, and the whole chain once on a tiny profile."""

import dataclasses
import json
import os
from pathlib import Path

from kinova_policy_ros import demo
from kinova_policy_ros.core.config import load_experiment_config
import pytest


@pytest.mark.parametrize('name', sorted(demo.PROFILES))
def test_every_profile_is_a_valid_training_config(name: str):
    profile = demo.PROFILES[name]
    cfg = load_experiment_config(demo.REPO_CONFIG, list(profile.train_overrides))
    assert cfg.data.resize_hw == (48, 64)
    assert cfg.model.goal_head and cfg.train.aux_goal_weight >= 1.0
    assert profile.eval_episodes >= 10


def test_full_profile_has_more_data_and_training_than_the_default():
    def steps(profile: demo.Profile) -> int:
        return load_experiment_config(
            demo.REPO_CONFIG, list(profile.train_overrides)
        ).train.num_steps

    default, full = demo.PROFILES['default'], demo.PROFILES['full']
    assert full.demonstrations > default.demonstrations
    assert steps(full) > steps(default)
    assert full.eval_episodes == 20  # the 20 held-out targets
    assert default.eval_episodes == 20


def test_default_profile_uses_the_task_space_head():
    cfg = load_experiment_config(
        demo.REPO_CONFIG, list(demo.PROFILES['default'].train_overrides)
    )
    assert cfg.model.action_space == 'task'
    assert not cfg.model.residual  # the task head is not residual on the joints
    assert cfg.train.augment.image_shift_px == 2 and cfg.train.aux_goal_weight == 3.0
    full = load_experiment_config(demo.REPO_CONFIG, list(demo.PROFILES['full'].train_overrides))
    assert full.model.action_space == 'joint' and full.model.residual


def test_worker_count_uses_the_usable_cpus_up_to_eight():
    n = demo.worker_count()
    assert 1 <= n <= min(8, len(os.sched_getaffinity(0)))


def test_tiny_profile_runs_every_stage_and_writes_the_report(tmp_path: Path, capsys):
    tiny = dataclasses.replace(
        demo.PROFILES['default'],
        name='tiny',
        demonstrations=4,
        eval_episodes=1,
        episode_duration_s=1.5,
        train_overrides=(
            *demo.PROFILES['default'].train_overrides,
            'train.num_steps=6',
            'train.val_every=6',
            'train.checkpoint_every=6',
            'train.batch_size=8',
            'data.val_fraction=0.25',
        ),
    )
    out = tmp_path / 'demo'
    summary = demo.run(tiny, out, fresh=True)
    printed = capsys.readouterr().out
    for stage in ('1/5 record 4', '2/5 convert', '3/5 train', '4/5 closed loop', '5/5 report'):
        assert stage in printed
    assert 'kinova_policy_ros demo, tiny profile' in printed
    assert summary['table']['demonstrations recorded / episodes converted'] == '4 / 4'
    assert summary['closed_loop']['episodes'] == 1
    assert 0.0 <= summary['closed_loop']['success_3cm'] <= 1.0
    # success at the tool centre point (success_3cm) and at the flange, both reported
    assert 0.0 <= summary['closed_loop']['success_3cm_flange'] <= 1.0
    assert summary['camera_profile'] == 'small'
    assert 'success within 3 cm / 5 cm at the flange' in summary['table']
    assert 'at the flange' in printed
    assert set(summary['timings_s']) == {'record', 'convert', 'train', 'closed_loop', 'total'}
    assert Path(summary['checkpoint']).is_dir()
    assert summary['plots'] and all((out / p).is_file() for p in summary['plots'])
    report = (out / 'report.md').read_text()
    assert report.startswith('# kinova_policy_ros demo (tiny)')
    assert '| success within 3 cm |' in report
    saved = json.loads((out / 'summary.json').read_text())
    assert saved['table'] == summary['table']


def test_report_table_formats_every_figure():
    closed = {
        'episodes': 10,
        'success_3cm': 0.7,
        'success_5cm': 0.9,
        'median_final_distance': 0.0213,
        'mean_final_distance': None,  # not measured
        'boundary_jump_median': 0.05,
        'boundary_jump_p95': 0.4,
        'latency_p50_ms': 12.34,
        'latency_p99_ms': 30.0,
        'speed_dips': 3,
        'handover_dips': 1,
        'jerk_rms_median': 12.345,
        'time_to_target_median_s': 4.5,
    }
    offline = {'mae_rad_per_step': [0.01, 0.02, 0.05]}
    table = demo.report_table(closed, offline, 150, 148, 750.0, 1000)
    assert table == {
        'success within 3 cm': '70% of 10 (150 demonstrations, 1000 training steps, 12.5 min)',
        'success within 5 cm': '90% of 10',
        'success within 3 cm / 5 cm at the flange': 'n/a / n/a',  # not in this summary
        'final distance, median / mean': '2.1 / n/a cm',
        'chunk-boundary velocity jump, median / p95': '0.050 / 0.400 rad/s',
        'speed dips: all / not in the plans (hand-over) / jerk RMS (median)': (
            '3 / 1 / 12.3 rad/s³'
        ),
        'time to target within 3 cm, median': '4.50 s',
        'node inference latency p50 / p99': '12.3 / 30.0 ms',
        'offline error (held-out demos), step 1 / step T': '0.57 / 2.86 deg',
        'demonstrations recorded / episodes converted': '150 / 148',
        'wall time': '12.5 min',
    }


def test_report_table_has_the_flange_figures_next_to_the_tcp_ones():
    closed = {
        'episodes': 4, 'success_3cm': 0.75, 'success_5cm': 1.0, 'success_3cm_flange': 0.0,
        'success_5cm_flange': 0.25, 'median_final_distance': 0.01, 'mean_final_distance': 0.02,
        'boundary_jump_median': None, 'boundary_jump_p95': None, 'latency_p50_ms': None,
        'latency_p99_ms': None,
    }
    table = demo.report_table(closed, {'mae_rad_per_step': [0.01]}, 4, 4, 60.0)
    assert table['success within 3 cm'] == (
        '75% of 4 (4 demonstrations, n/a training steps, 1.0 min)'
    )
    assert demo.PROFILES['default'].train_steps == 2500
    assert demo.PROFILES['full'].train_steps == 24000
    assert table['success within 3 cm / 5 cm at the flange'] == '0% / 25%'


def test_camera_profile_option_reaches_recording_and_evaluation(monkeypatch, tmp_path: Path):
    seen: dict[str, object] = {}

    def fake_run(profile, out, fresh, camera_profile='small'):
        seen['camera_profile'] = camera_profile
        return {}

    monkeypatch.setattr(demo, 'run', fake_run)
    assert demo.main(['--camera-profile', 'kinova_vision', '--out', str(tmp_path)]) == 0
    assert seen['camera_profile'] == 'kinova_vision'
    with pytest.raises(SystemExit):
        demo.main(['--camera-profile', 'fisheye'])

    from kinova_policy_ros.sim.ros import record_demos

    def fake_record(out, seeds, options, workers=1):
        seen['scene'], seen['rates'] = options.scene, options.rates
        return []

    monkeypatch.setattr(record_demos, 'record_offline', fake_record)
    assert demo.record(tmp_path, demo.PROFILES['default'], 'kinova_vision') == []
    scene = seen['scene']
    assert (scene.image_width, scene.image_height, scene.depth_size) == (1280, 720, (480, 270))
    assert scene.depth_frame == 'camera_depth_frame' and seen['rates'].camera_hz == 30.0
