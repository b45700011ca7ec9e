"""
PNG plots of the trainer and the evaluator (matplotlib, headless, 100 dpi).

Inputs are checked first: a malformed CSV or arrays of the wrong shape raise ``ValueError``
naming the file or the argument, not an error from deep inside matplotlib.
"""

from collections.abc import Sequence
import csv
import os
from pathlib import Path

from kinova_policy_ros.core.figures import new_figure, save_figure
from matplotlib.axes import Axes
import numpy as np


def plot_loss_curve(metrics_csv: str | os.PathLike[str], out_png: str | os.PathLike[str]) -> Path:
    """Train (and validation, where present) loss against step, log scale."""
    steps: list[int] = []
    train: list[float] = []
    vsteps: list[int] = []
    val: list[float] = []
    with open(metrics_csv) as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or 'step' not in reader.fieldnames:
            raise ValueError(f'{metrics_csv}: no step column (columns: {reader.fieldnames})')
        for line, row in enumerate(reader, start=2):
            try:
                if row.get('train_loss'):
                    train.append(float(row['train_loss']))
                    steps.append(int(row['step']))
                if row.get('val_loss'):
                    val.append(float(row['val_loss']))
                    vsteps.append(int(row['step']))
            except (TypeError, ValueError) as err:
                raise ValueError(f'{metrics_csv}: line {line}: {err}') from err
    fig = new_figure(7, 4)
    ax = fig.add_subplot()
    ax.plot(steps, train, label='train (raw weights)', lw=1)
    if val:
        ax.plot(vsteps, val, 'o-', label='validation (EMA weights)', lw=1.5)
    ax.set_yscale('log')
    ax.set_xlabel('optimizer step')
    ax.set_ylabel('loss (normalized joints)')
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, out_png)


def plot_joint_trajectories(
    t_s: np.ndarray,
    recorded: np.ndarray,
    predicted: np.ndarray,
    joint_names: Sequence[str],
    out_png: str | os.PathLike[str],
    title: str = '',
    labels: tuple[str, str] = ('recorded', 'predicted'),
) -> Path:
    """One subplot per joint: two [N, 7] trajectories (rad) against time."""
    if recorded.ndim != 2 or t_s.shape != (recorded.shape[0],):
        raise ValueError(
            f'recorded: expected [N, J] with N = len(t_s) = {len(t_s)}, got {recorded.shape}'
        )
    n_j = recorded.shape[1]
    if predicted.ndim != 2 or predicted.shape[1] != n_j or len(predicted) > len(t_s):
        raise ValueError(f'predicted: expected [M <= {len(t_s)}, {n_j}], got {predicted.shape}')
    if len(joint_names) != n_j:
        raise ValueError(f'joint_names: expected {n_j} names, got {list(joint_names)}')
    fig = new_figure(8, 1.6 * n_j)
    axes: list[Axes] = list(fig.subplots(n_j, 1, sharex=True, squeeze=False)[:, 0])
    for j, ax in enumerate(axes):
        ax.plot(t_s, recorded[:, j], 'k-', lw=1.2, label=labels[0])
        ax.plot(t_s[:len(predicted)], predicted[:, j], 'r--', lw=1.2, label=labels[1])
        ax.set_ylabel(f'{joint_names[j]}\n[rad]', fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].legend(loc='upper right', fontsize=8)
    axes[-1].set_xlabel('time [s]')
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, out_png)


def plot_horizon_error(
    per_step_rad: np.ndarray, joint_names: Sequence[str], out_png: str | os.PathLike[str]
) -> Path:
    """Mean absolute error [T, 7] (rad) per horizon step, one line per joint."""
    if per_step_rad.ndim != 2 or per_step_rad.shape[1] != len(joint_names):
        raise ValueError(
            f'per_step_rad: expected [T, {len(joint_names)}] (one column per joint name), '
            f'got {per_step_rad.shape}'
        )
    fig = new_figure(7, 4)
    ax = fig.add_subplot()
    steps = np.arange(1, per_step_rad.shape[0] + 1)
    for j, name in enumerate(joint_names):
        ax.plot(steps, np.degrees(per_step_rad[:, j]), label=name)
    ax.set_xlabel('prediction step (frames ahead)')
    ax.set_ylabel('mean |error| [deg]')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    return save_figure(fig, out_png)
