"""The demonstration recorder's entry points (``sim.ros.record_demos``), offline."""

import json
from pathlib import Path

from kinova_policy_ros.core.errors import ConfigError, KinovaPolicyError
from kinova_policy_ros.sim.mjcf import SceneConfig
from kinova_policy_ros.sim.ros import record_demos
from kinova_policy_ros.sim.ros.record_demos import record_offline, RecordOptions
import pytest

SMALL = RecordOptions(scene=SceneConfig(image_width=32, image_height=24), settle_time=0.1)


def test_record_demos_rejects_zero_episodes(tmp_path: Path, capsys):
    assert record_demos.main(['--out', str(tmp_path), '--episodes', '0']) == 2
    assert 'episodes' in capsys.readouterr().err


def test_parser_defaults_and_options():
    args = record_demos.build_parser().parse_args(['--out', 'x'])
    assert (args.episodes, args.seed, args.storage, args.workers) == (10, 0, 'mcap', 1)
    assert (args.image_width, args.image_height, args.camera_hz) == (128, 96, 15.0)
    assert not args.via_dds and args.recovery_fraction == args.pause_fraction == 0.0
    assert args.recovery_tilt_deg == 0.0
    with pytest.raises(SystemExit):
        record_demos.build_parser().parse_args(['--out', 'x', '--storage', 'rosbag1'])


def test_main_passes_the_options_on_and_reports_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    calls = []

    def fake_offline(out, seeds, options, workers, verbose):
        calls.append((out, seeds, options, workers, verbose))
        return [{'seed': s, 'success': s % 2 == 0} for s in seeds]

    monkeypatch.setattr(record_demos, 'record_offline', fake_offline)
    argv = ['--out', str(tmp_path), '--episodes', '3', '--seed', '4', '--workers', '2',
            '--camera-hz', '10', '--pause-fraction', '0.5', '--image-width', '64', '--quiet',
            '--recovery-fraction', '0.3', '--recovery-tilt-deg', '12.5']
    assert record_demos.main(argv) == 0
    (out, seeds, options, workers, verbose), = calls
    assert (out, seeds, workers, verbose) == (tmp_path, [4, 5, 6], 2, False)
    assert options.rates.camera_hz == 10.0 and options.variation.pause_fraction == 0.5
    assert options.variation.recovery_fraction == 0.3
    assert options.variation.recovery_tilt_deg == 12.5
    assert options.scene.image_width == 64
    assert 'expert success rate 67%' in capsys.readouterr().out

    def failing(*args, **kwargs):
        raise KinovaPolicyError('bag directory already exists')

    monkeypatch.setattr(record_demos, 'record_offline', failing)
    assert record_demos.main(['--out', str(tmp_path)]) == 1
    assert 'record_demos: bag directory already exists' in capsys.readouterr().err


def test_record_offline_checks_its_arguments(tmp_path: Path):
    with pytest.raises(ConfigError, match='workers must be >= 1, got 0'):
        record_offline(tmp_path, [1], SMALL, workers=0)
    with pytest.raises(KinovaPolicyError, match=r'consecutive seeds, got \[1, 3\]'):
        record_demos.record_via_dds(tmp_path, [1, 3])
    assert list(tmp_path.iterdir()) == []


def test_record_offline_in_two_workers_keeps_the_seed_order(tmp_path: Path, capfd):
    entries = record_offline(tmp_path, [12, 10, 11], SMALL, workers=2, verbose=True)
    assert [e['seed'] for e in entries] == [12, 10, 11]
    assert all(e['success'] and isinstance(e['wall_s'], float) for e in entries)
    manifest = json.loads((tmp_path / 'episodes.json').read_text())['episodes']
    assert manifest == entries
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'episode_000010', 'episode_000011', 'episode_000012', 'episodes.json'
    ]
    printed = capfd.readouterr().out  # printed by the worker processes
    assert all(f'episode seed={s}:' in printed for s in (10, 11, 12))
    # the same seed gives the same episode in one process
    again = record_offline(tmp_path / 'one', [11], SMALL, verbose=False)
    assert again[0]['final_distance'] == entries[2]['final_distance']
    assert again[0]['messages'] == entries[2]['messages']
