"""Tests of ``sim.robustness``: the named shifts, the Wilson interval, the CLI end to end."""

from dataclasses import asdict, replace
import json
import re

from kinova_policy_ros.core.errors import ConfigError
from kinova_policy_ros.sim import robustness as rb
from kinova_policy_ros.sim.camera import camera_profile
from kinova_policy_ros.sim.env import Gen3Sim
from kinova_policy_ros.sim.mjcf import camera_axes, optical_rotation, SceneConfig
import numpy as np
import pytest

BASE = camera_profile('small').scene()
SEED = 3


def red_mask(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., 0] > 120) & (rgb[..., 1] < 60) & (rgb[..., 2] < 60)


@pytest.fixture(scope='module')
def renders() -> dict[str, tuple[np.ndarray, np.ndarray, Gen3Sim]]:
    """Every shift's colour image and camera pose of episode ``SEED``."""
    out = {}
    for name, shift in rb.SHIFTS.items():
        with Gen3Sim(shift(BASE)) as sim:
            sim.reset(SEED)
            out[name] = (sim.render()[0].astype(int), sim.camera_pose(), sim.target_position())
    return out


# -- the shifts -----------------------------------------------------------------------------------
def test_each_shift_changes_only_its_own_fields():
    changed = {
        name: {k for k, v in asdict(shift(BASE)).items() if v != asdict(BASE)[k]}
        for name, shift in rb.SHIFTS.items()
    }
    assert changed == {
        'nominal': set(),
        'light_dim': {'light_scale'},
        'light_bright': {'light_scale'},
        'light_side': {'light_dir'},
        'camera_shift': {'camera_offset_m'},
        'camera_tilt': {'camera_offset_deg'},
        'camera_pan': {'camera_offset_deg'},
        'cube_small': {'cube_half_size'},
        'cube_large': {'cube_half_size'},
        'cube_colour': {'cube_rgba'},
        'distractor': {'distractor'},
    }
    assert rb.SHIFTS['light_dim'](BASE).light_scale == 0.5
    assert rb.SHIFTS['light_bright'](BASE).light_scale == 1.5
    assert rb.SHIFTS['cube_small'](BASE).cube_half_size == pytest.approx(0.021)
    assert rb.SHIFTS['cube_large'](BASE).cube_half_size == pytest.approx(0.039)
    shift = np.asarray(rb.SHIFTS['camera_shift'](BASE).camera_offset_m)
    assert np.linalg.norm(shift) == pytest.approx(0.01) and shift[2] == pytest.approx(0.0)
    np.testing.assert_allclose(shift / 0.01, camera_axes(BASE)[:, 0])  # across the view
    # shifts apply to the scene they are given (they compose with another base)
    assert rb.SHIFTS['light_dim'](replace(BASE, light_scale=2.0)).light_scale == 1.0
    assert rb.SHIFTS['camera_tilt'](rb.SHIFTS['camera_pan'](BASE)).camera_offset_deg == (
        2.0, 2.0, 0.0
    )
    assert all(s.description for s in rb.SHIFTS.values())


def test_the_shifted_images_change_the_way_they_should(renders):
    rgb0, _, target0 = renders['nominal']
    assert red_mask(rgb0).sum() > 20
    assert renders['light_dim'][0].mean() < rgb0.mean() - 10
    assert renders['light_bright'][0].mean() > rgb0.mean() + 10
    assert np.abs(renders['light_side'][0] - rgb0).mean() > 2
    for name in rb.SHIFTS:
        # the target stays put (its centre is half the cube's size above the table)
        np.testing.assert_array_equal(renders[name][2][:2], target0[:2])
        assert renders[name][2][2] == pytest.approx(rb.SHIFTS[name](BASE).cube_half_size)
        if name != 'nominal':
            assert not np.array_equal(renders[name][0], rgb0), name


def test_camera_shifts_move_the_camera_pose(renders):
    _, pose0, _ = renders['nominal']
    _, pose, _ = renders['camera_shift']
    assert np.linalg.norm(pose[:3, 3] - pose0[:3, 3]) == pytest.approx(0.01)
    np.testing.assert_allclose(pose[:3, :3], pose0[:3, :3], atol=1e-9)
    for name, deg in (('camera_tilt', (2.0, 0.0, 0.0)), ('camera_pan', (0.0, 2.0, 0.0))):
        _, pose, _ = renders[name]
        np.testing.assert_allclose(pose[:3, 3], pose0[:3, 3], atol=1e-9)
        np.testing.assert_allclose(pose0[:3, :3].T @ pose[:3, :3], optical_rotation(deg),
                                   atol=1e-6)
    # a tilt up moves the scene down in the image, a pan right moves it left
    ys0, xs0 = np.nonzero(red_mask(renders['nominal'][0]))
    ys, _ = np.nonzero(red_mask(renders['camera_tilt'][0]))
    _, xs = np.nonzero(red_mask(renders['camera_pan'][0]))
    assert ys.mean() > ys0.mean() + 1 and xs.mean() < xs0.mean() - 1


def test_cube_shifts_change_the_cube_pixels(renders):
    red0 = red_mask(renders['nominal'][0])
    assert red_mask(renders['cube_small'][0]).sum() < 0.7 * red0.sum()
    assert red_mask(renders['cube_large'][0]).sum() > 1.3 * red0.sum()
    colour = renders['cube_colour'][0]
    assert colour[red0][:, 1].mean() > renders['nominal'][0][red0][:, 1].mean() + 30  # greener
    assert red_mask(colour).sum() < red0.sum() / 4
    rgb = renders['distractor'][0]
    blue = rgb[..., 2] > rgb[..., 0] + 60
    assert blue.sum() > 10 and not (blue & red0).any()  # seen, and not over the target


# -- evaluate_shifts and the CLI ------------------------------------------------------------------
def test_parse_seeds_and_shifts():
    assert rb.parse_seeds('0-3') == [0, 1, 2, 3]
    assert rb.parse_seeds('5') == [5]
    assert rb.parse_seeds('0-1, 7,9-10') == [0, 1, 7, 9, 10]
    for bad in ('3-1', 'a', '', '-2', '1-2-3', '0-2,2'):
        with pytest.raises(ConfigError, match=rf"--seeds '{bad}'"):
            rb.parse_seeds(bad)
    assert rb.parse_shifts('nominal, distractor') == ['nominal', 'distractor']
    with pytest.raises(ConfigError, match=r"--shifts 'nominal,fog': unknown \['fog'\]"):
        rb.parse_shifts('nominal,fog')
    with pytest.raises(ConfigError, match=r"--shifts ','"):
        rb.parse_shifts(',')


def test_evaluate_shifts_rejects_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match=r'seeds \[\] must be'):
        rb.evaluate_shifts(tmp_path, [])
    with pytest.raises(ConfigError, match=r'duration_s must be > 0, got 0'):
        rb.evaluate_shifts(tmp_path, [0], duration_s=0)
    with pytest.raises(ConfigError, match=r"shifts \['fog'\]: choose from"):
        rb.evaluate_shifts(tmp_path, [0], ['fog'])


def test_format_table_rows():
    result = rb._shift_result(rb.SHIFTS['nominal'], BASE, BASE, [0.01, 0.04, 0.2, 0.02])
    assert result['successes_3cm'] == 2 and result['successes_5cm'] == 3
    assert result['median_final_distance'] == pytest.approx(0.03)
    report = rb.RobustnessReport(
        checkpoint='c', seeds=[0, 1, 2, 3], duration_s=1.0, camera_profile='small',
        shifts=[result],
    )
    lines = rb.format_table(report).splitlines()
    assert lines[2] == '| nominal | 2/4 (50%) | 15%-85% | 3/4 (75%) | 30%-95% | 3.0 cm |'


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    synthetic = pytest.importorskip('kinova_policy_ros.testing.synthetic')
    return synthetic.make_random_checkpoint(
        tmp_path_factory.mktemp('robust') / 'ckpt',
        image_hw=(24, 32),
        dt=1 / 15,
        d_model=32,
        dim_feedforward=64,
        conv_channels=(8, 16),
        img_feat_dim=16,
        q_feat_dim=16,
    )


def test_cli_end_to_end(checkpoint, tmp_path, capsys):
    out = tmp_path / 'out'
    argv = ['--checkpoint', str(checkpoint), '--seeds', '0-1', '--shifts',
            'nominal,cube_large', '--duration', '0.4', '--out', str(out)]
    assert rb.main(argv) == 0
    printed = capsys.readouterr()
    rows = [line for line in printed.out.splitlines() if line.startswith('| ')]
    assert [r.split(' | ')[0] for r in rows] == ['| shift', '| nominal', '| cube_large']
    assert 'robustness: cube_large: ' in printed.err
    assert sorted(p.name for p in out.iterdir()) == ['robustness.json']  # no temp file left
    report = json.loads((out / 'robustness.json').read_text())
    assert report['seeds'] == [0, 1] and report['duration_s'] == 0.4
    assert report['camera_profile'] == 'small' and report['checkpoint'] == str(checkpoint)
    assert [s['shift'] for s in report['shifts']] == ['nominal', 'cube_large']
    nominal, large = report['shifts']
    assert nominal['scene'] == {} and large['scene'] == {'cube_half_size': pytest.approx(0.039)}
    for s in report['shifts']:
        assert s['episodes'] == 2 and len(s['final_distances']) == 2
        k = sum(d <= 0.03 for d in s['final_distances'])
        assert s['successes_3cm'] == k
        assert s['success_3cm_ci95'] == pytest.approx(list(rb.wilson_interval(k, 2)))
        assert s['median_final_distance'] == pytest.approx(np.median(s['final_distances']))
    # the same seeds give the same numbers (the loop is deterministic)
    again = rb.evaluate_shifts(checkpoint, [0, 1], ['nominal'], duration_s=0.4)
    assert again['shifts'][0]['final_distances'] == nominal['final_distances']


@pytest.mark.parametrize(
    ('flag', 'value', 'match'),
    [
        ('--seeds', '5-2', r"--seeds '5-2': expected"),
        ('--shifts', 'nominal,rain', r"--shifts 'nominal,rain': unknown \['rain'\]"),
        ('--duration', '-1', r'--duration -1\.0: must be > 0'),
        ('--checkpoint', 'missing', r"--checkpoint '.*missing': not a directory"),
    ],
)
def test_cli_errors_name_the_flag_and_value(tmp_path, capsys, flag, value, match):
    args = {'--checkpoint': str(tmp_path), '--seeds': '0', '--out': str(tmp_path / 'out')}
    args[flag] = str(tmp_path / value) if flag == '--checkpoint' else value
    assert rb.main([x for kv in args.items() for x in kv]) == 2
    assert re.search(match, capsys.readouterr().err)
    assert not (tmp_path / 'out').exists()


def test_scene_config_defaults_stay_valid_under_every_shift():
    for shift in rb.SHIFTS.values():
        assert isinstance(shift(SceneConfig()), SceneConfig)
