"""Each plot writes a PNG of the figure's size (100 dpi); malformed input is refused."""

from pathlib import Path
import struct

from kinova_policy_ros.training.plots import (
    plot_horizon_error,
    plot_joint_trajectories,
    plot_loss_curve,
)
import numpy as np
import pytest

NAMES = [f'joint_{i}' for i in range(1, 8)]


def png_size(path: Path) -> tuple[int, int]:
    raw = path.read_bytes()
    assert raw[:8] == b'\x89PNG\r\n\x1a\n' and raw[12:16] == b'IHDR'
    return struct.unpack('>II', raw[16:24])


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_loss_curve(tmp_path: Path):
    csv = write_csv(
        tmp_path / 'metrics.csv',
        'step,lr,train_loss,val_loss\n1,0.001,0.5,\n2,0.001,0.25,0.3\n3,0.001,0.125,\n',
    )
    out = plot_loss_curve(csv, tmp_path / 'plots' / 'loss.png')
    assert out == tmp_path / 'plots' / 'loss.png'
    assert png_size(out) == (700, 400)
    assert [p.name for p in (tmp_path / 'plots').iterdir()] == ['loss.png']  # no temp file


def test_loss_curve_refuses_a_malformed_csv(tmp_path: Path):
    bad = write_csv(tmp_path / 'a.csv', 'step,train_loss\n1,0.5\n2,lots\n')
    with pytest.raises(ValueError, match=r'a\.csv: line 3: could not convert'):
        plot_loss_curve(bad, tmp_path / 'a.png')
    no_step = write_csv(tmp_path / 'b.csv', 'train_loss\n0.5\n')
    with pytest.raises(ValueError, match=r'b\.csv: no step column'):
        plot_loss_curve(no_step, tmp_path / 'b.png')
    with pytest.raises(FileNotFoundError):
        plot_loss_curve(tmp_path / 'missing.csv', tmp_path / 'c.png')
    assert not list(tmp_path.glob('*.png'))


def test_joint_trajectories(tmp_path: Path):
    t = np.linspace(0, 2, 30)
    rec = np.sin(t[:, None] + np.arange(7))
    out = plot_joint_trajectories(t, rec, rec[:25] + 0.1, NAMES, tmp_path / 't.png', title='ep')
    assert png_size(out) == (800, 1120)  # 8 x (1.6 x 7) inches
    three = plot_joint_trajectories(t, rec[:, :3], rec[:, :3], NAMES[:3], tmp_path / 't3.png')
    assert png_size(three) == (800, 480)


@pytest.mark.parametrize(
    ('t_len', 'rec_shape', 'pred_shape', 'names', 'message'),
    [
        (30, (29, 7), (10, 7), 7, r'recorded: expected \[N, J\] with N = len\(t_s\) = 30'),
        (30, (30,), (10, 7), 7, r'recorded: expected'),
        (30, (30, 7), (31, 7), 7, r'predicted: expected \[M <= 30, 7\], got \(31, 7\)'),
        (30, (30, 7), (10, 6), 7, r'predicted: expected'),
        (30, (30, 7), (10, 7), 6, r'joint_names: expected 7 names'),
    ],
)
def test_joint_trajectories_refuse_mismatched_shapes(
    tmp_path: Path, t_len, rec_shape, pred_shape, names, message
):
    with pytest.raises(ValueError, match=message):
        plot_joint_trajectories(
            np.arange(t_len, dtype=float),
            np.zeros(rec_shape),
            np.zeros(pred_shape),
            NAMES[:names],
            tmp_path / 'x.png',
        )
    assert not (tmp_path / 'x.png').exists()


def test_horizon_error(tmp_path: Path):
    err = np.abs(np.random.default_rng(0).normal(0, 0.01, (12, 7)))
    assert png_size(plot_horizon_error(err, NAMES, tmp_path / 'h.png')) == (700, 400)
    with pytest.raises(ValueError, match=r'per_step_rad: expected \[T, 6\].*got \(12, 7\)'):
        plot_horizon_error(err, NAMES[:6], tmp_path / 'bad.png')
    with pytest.raises(ValueError, match=r'per_step_rad: expected'):
        plot_horizon_error(err[0], NAMES, tmp_path / 'bad.png')
    assert not (tmp_path / 'bad.png').exists()
