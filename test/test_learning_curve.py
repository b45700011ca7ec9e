"""The learning curve: its command line, the Wilson interval, the aggregation, one tiny run."""

import dataclasses
import json
from pathlib import Path

from helpers import curve_outcome, curve_results
from kinova_policy_ros import learning_curve as lc
from kinova_policy_ros import learning_curve_report as lcr
from kinova_policy_ros.core.errors import ConfigError
from kinova_policy_ros.sim.eval_metrics import wilson_interval
import pytest


def settings(tmp_path: Path, **changes: object) -> lc.Settings:
    base = lc.parse_args(['--out', str(tmp_path / 'curve'), '--demos', '50,100'])
    return dataclasses.replace(base, **changes)


# -- command line ------------------------------------------------------------------------------


def test_defaults_are_the_documented_curve(tmp_path: Path):
    s = lc.parse_args(['--demos', '400,50,100'])
    assert s.demos == (50, 100, 400)  # ascending, whatever the order given
    assert s.train_seeds == (0, 1, 2)
    assert (s.eval_episodes, s.eval_mode, s.profile) == (50, 'inprocess', 'default')
    assert s.steps is None and not s.resume and s.out == Path('runs') / 'learning_curve'
    assert s.episode_duration_s == 8.0  # the profile's episode
    assert lc.parse_args([]).demos == (50, 100, 200, 400, 1500)


@pytest.mark.parametrize(
    ('argv', 'match'),
    [
        (['--demos', '50,,100'], r"--demos '50,,100': expected comma-separated integers"),
        (['--demos', 'fifty'], r"--demos 'fifty': expected comma-separated integers"),
        (['--demos', '0,50'], r"--demos '0,50': 0 is below 1"),
        (['--demos', '50,50'], r"--demos '50,50': a value appears twice"),
        (['--train-seeds', '0,-1'], r"--train-seeds '0,-1': -1 is below 0"),
        (['--eval-episodes', '0'], r"--eval-episodes '0': 0 is below 1"),
        (['--eval-episodes', '3,4'], r"--eval-episodes '3,4': expected one integer"),
        (['--eval-episodes', '1001'], r'--eval-episodes 1001: at most 1000'),
        (['--steps', '-5'], r"--steps '-5': -5 is below 1"),
        (['--profile', 'huge'], r"--profile 'huge': not one of \['default', 'full'\]"),
        (['--eval', 'gpu'], r"--eval 'gpu': not one of \['inprocess', 'dds'\]"),
        (['--camera-profile', 'big'], r"--camera-profile 'big': not one of"),
        (['--episode-duration', '0'], r"--episode-duration '0': expected seconds > 0"),
        (['--episode-duration', 'nan'], r"--episode-duration 'nan': expected seconds > 0"),
        (['--train-override', 'train.nope=1'], r"--train-override \['train.nope=1'\]"),
    ],
)
def test_bad_input_names_the_flag_and_the_value(argv: list[str], match: str):
    with pytest.raises(ConfigError, match=match):
        lc.parse_args(argv)


def test_main_reports_a_bad_flag_and_returns_2(capsys):
    assert lc.main(['--demos', '0']) == 2
    assert "error: --demos '0': 0 is below 1" in capsys.readouterr().err


def test_training_overrides_add_the_steps_and_the_seed_after_the_recipe(tmp_path: Path):
    s = settings(tmp_path, steps=7, train_overrides=('train.batch_size=8',))
    over = lc.training_overrides(s, 2)
    recipe = lc.demo.PROFILES['default'].train_overrides
    assert over[: len(recipe)] == recipe
    assert over[len(recipe):] == ('train.batch_size=8', 'train.num_steps=7', 'train.seed=2')
    assert lc.training_config(s, 2) == 7
    assert lc.training_config(settings(tmp_path), 0) == lc.demo.PROFILES['default'].train_steps


def test_subset_links_the_first_episodes_and_refuses_more_than_recorded(tmp_path: Path):
    episodes = []
    for seed in (1002, 1000, 1001):
        episodes.append(tmp_path / f'episode_{seed:06d}.npz')
        episodes[-1].write_text(str(seed))
    folder = lc.subset(episodes, 2, tmp_path / 'n2')
    assert sorted(p.name for p in folder.iterdir()) == ['episode_001000.npz', 'episode_001001.npz']
    assert (folder / 'episode_001001.npz').read_text() == '1001'
    with pytest.raises(ConfigError, match='--demos 4: only 3 episodes were recorded'):
        lc.subset(episodes, 4, tmp_path / 'n4')


def test_a_used_out_needs_resume_and_the_same_settings(tmp_path: Path):
    first = settings(tmp_path, steps=10)
    lc.prepare_out(first)
    assert json.loads((first.out / 'settings.json').read_text())['steps'] == 10
    with pytest.raises(ConfigError, match=r'--out .*curve: not empty; pass --resume'):
        lc.prepare_out(first)
    with pytest.raises(ConfigError, match=r'--resume: steps was 10 in .*, now 20'):
        lc.prepare_out(dataclasses.replace(first, resume=True, steps=20))
    # more counts and seeds continue the same curve
    lc.prepare_out(dataclasses.replace(first, resume=True, demos=(50, 100, 200)))


def test_resume_reuses_a_finished_evaluation(tmp_path: Path, monkeypatch):
    s = settings(tmp_path, resume=True, eval_episodes=2)
    run_dir, ckpt = tmp_path / 'n50_s0', Path('checkpoints') / 'step_001000'
    saved = [curve_outcome(0, 0.01), curve_outcome(1, 0.2)]
    lcr.write_json(
        run_dir / 'eval.json',
        {'checkpoint': ckpt.name, 'eval': 'inprocess', 'seeds': [0, 1], 'episodes': saved},
    )
    monkeypatch.setattr(lc, 'evaluate_inprocess', lambda *a: [curve_outcome(0, 9.0)])
    assert lc.evaluate_run(s, ckpt, run_dir) == saved
    # other held-out seeds: evaluated again (and saved)
    again = lc.evaluate_run(dataclasses.replace(s, eval_episodes=1), ckpt, run_dir)
    assert again == [curve_outcome(0, 9.0)]
    assert json.loads((run_dir / 'eval.json').read_text())['seeds'] == [0]


# -- aggregation and outputs -------------------------------------------------------------------


def test_write_outputs_writes_the_json_the_table_and_the_plot(tmp_path: Path):
    s = settings(tmp_path, steps=12)
    summary = lc.write_outputs(s, curve_results(), {'record': 1.0})
    saved = json.loads((s.out / 'learning_curve.json').read_text())
    assert saved == json.loads(json.dumps(summary))
    assert saved['settings']['demos'] == [50, 100] and saved['train_steps'] == 12
    assert [r['demonstrations'] for r in saved['curve']] == [50, 100]
    assert [(r['demonstrations'], r['train_seed']) for r in saved['runs']] == [
        (50, 0), (50, 1), (100, 0), (100, 1)
    ]
    assert saved['runs'][0]['episodes'][1] == curve_outcome(1, 0.06)
    assert saved['timings_s'] == {'record': 1.0}
    assert (s.out / 'learning_curve.md').read_text().count('\n| ') == 3
    assert (s.out / 'learning_curve.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert not list(s.out.glob('.*'))  # no temp file left


# -- the whole command, tiny -------------------------------------------------------------------

TINY = [
    '--demos', '3,2',
    '--train-seeds', '0',
    '--steps', '2',
    '--eval-episodes', '1',
    '--episode-duration', '1.0',
    '--eval', 'inprocess',
    '--train-override', 'train.batch_size=8',
    '--train-override', 'train.val_every=2',
    '--train-override', 'train.checkpoint_every=2',
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.ros  # records through rclpy serialization, like test_demo
def test_tiny_curve_end_to_end_and_resumed(tmp_path: Path, capsys):
    out = tmp_path / 'curve'
    assert lc.main([*TINY, '--out', str(out)]) == 0
    printed = capsys.readouterr().out
    assert 'record 3 demonstrations' in printed
    assert printed.index('1/2: 2 demonstrations') < printed.index('2/2: 3 demonstrations')
    assert sorted(p.name for p in (out / 'episodes').glob('*.npz')) == [
        'episode_001000.npz', 'episode_001001.npz', 'episode_001002.npz'
    ]
    assert len(list((out / 'data' / 'n2').iterdir())) == 2
    for run in ('n2_s0', 'n3_s0'):
        assert (out / run / 'checkpoints' / 'step_000002').is_dir()
        assert json.loads((out / run / 'eval.json').read_text())['seeds'] == [0]
    saved = json.loads((out / 'learning_curve.json').read_text())
    assert set(saved) == {'settings', 'train_steps', 'curve', 'runs', 'timings_s'}
    assert saved['train_steps'] == 2
    assert [r['demonstrations'] for r in saved['curve']] == [2, 3]
    for row in saved['curve']:
        assert [s['train_seed'] for s in row['per_seed']] == [0]
        assert row['pooled']['episodes'] == 1
        for key in ('3cm', '5cm'):
            ok = row['pooled']['success'][key]
            assert ok['rate'] in (0.0, 1.0) and ok['ci'] == list(
                wilson_interval(ok['successes'], 1)
            )
    assert [r['episodes'][0]['seed'] for r in saved['runs']] == [0, 0]
    assert {'record', 'train n2_s0', 'eval n3_s0'} <= set(saved['timings_s'])
    assert (out / 'learning_curve.md').read_text().count('\n| ') == 3
    assert (out / 'learning_curve.png').stat().st_size > 0

    # interrupted: the second run's evaluation is lost; --resume redoes only that
    (out / 'n3_s0' / 'eval.json').unlink()
    assert lc.main([*TINY, '--out', str(out), '--resume']) == 0
    printed = capsys.readouterr().out
    assert 'reusing 3 converted episodes' in printed
    assert printed.count('final checkpoint exists, skipped') == 2
    assert printed.count('evaluation exists, reused') == 1
    assert (out / 'n3_s0' / 'eval.json').is_file()
    assert json.loads((out / 'learning_curve.json').read_text())['curve'] == saved['curve']

    # without --resume the folder is not overwritten
    assert lc.main([*TINY, '--out', str(out)]) == 2
    assert 'not empty; pass --resume' in capsys.readouterr().err
