"""
PNG plots of a closed-loop evaluation (``sim.dds_eval`` results), matplotlib object API only.

Each function takes the results dictionary of ``evaluate_over_dds`` (``{'episodes': [...],
...}``, or the list of episode dictionaries) or one episode, and writes one PNG atomically.
Distances are in metres in the results and drawn in millimetres.
"""

from collections.abc import Mapping, Sequence
import os
from pathlib import Path
from typing import Any

from kinova_policy_ros.core import kinematics as kin
from kinova_policy_ros.core.figures import new_figure, save_figure
from matplotlib.axes import Axes
import numpy as np

Results = Mapping[str, Any] | Sequence[Mapping[str, Any]]
PathLike = str | os.PathLike[str]


def _episodes(results: Results) -> list[Mapping[str, Any]]:
    if isinstance(results, Mapping):
        return list(results.get('episodes', []))
    return list(results)


def plot_success(results: Results, png: PathLike) -> Path:
    """Plot the final (bar) and minimum (marker) distance per episode, 3 cm and 5 cm lines."""
    episodes = _episodes(results)
    fig = new_figure(max(5.0, 0.45 * len(episodes) + 2.0), 4)
    ax = fig.add_subplot()
    x = np.arange(len(episodes))
    final = np.array([1000 * float(e['final_distance']) for e in episodes])
    minimum = np.array([1000 * float(e.get('min_distance', np.nan)) for e in episodes])
    colors = ['tab:green' if bool(e.get('success_3cm')) else 'tab:red' for e in episodes]
    ax.bar(x, final, color=colors, label='final distance')
    ax.plot(x, minimum, 'k_', ms=14, mew=2, label='minimum distance')
    ax.axhline(30.0, color='tab:green', ls='--', lw=1, label='3 cm')
    ax.axhline(50.0, color='tab:orange', ls=':', lw=1, label='5 cm')
    ax.set_xticks(x)
    ax.set_xticklabels([str(e['seed']) for e in episodes], rotation=90 if len(x) > 20 else 0)
    ax.set_xlabel('seed')
    ax.set_ylabel('end effector -> target [mm]')
    rate = np.mean([bool(e.get('success_3cm')) for e in episodes]) if episodes else np.nan
    ax.set_title(f'closed loop: {len(episodes)} episodes, {100 * rate:.0f} % within 3 cm')
    ax.grid(alpha=0.3, axis='y')
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, png)


def plot_ee_paths(results: Results, png: PathLike) -> Path:
    """Plot the end-effector paths and targets: top view (x-y) and side view (x-z)."""
    episodes = _episodes(results)
    fig = new_figure(11, 5)
    top, side = fig.subplots(1, 2)
    colors = [f'C{i % 10}' for i in range(len(episodes))]
    for e, color in zip(episodes, colors):
        path = np.asarray(e.get('ee_path', []), dtype=np.float64).reshape(-1, 3)
        target = np.asarray(e.get('target', [np.nan] * 3), dtype=np.float64)
        for ax, (a, b) in ((top, (0, 1)), (side, (0, 2))):
            if len(path):
                ax.plot(path[:, a], path[:, b], '-', color=color, lw=1.2)
                ax.plot(path[0, a], path[0, b], 'o', color=color, ms=4)
                ax.plot(path[-1, a], path[-1, b], 'x', color=color, ms=6)
            ax.plot(target[a], target[b], '*', color=color, ms=12, mec='k', mew=0.5)
    for ax, ylabel, title in (
        (top, 'y [m]', 'top view'),
        (side, 'z [m]', 'side view'),
    ):
        ax.set_xlabel('x [m]')
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.set_aspect('equal', adjustable='datalim')
        ax.grid(alpha=0.3)
    top.plot([], [], 'ko', ms=4, label='start')
    top.plot([], [], 'kx', ms=6, label='end')
    top.plot([], [], 'k*', ms=10, label='target')
    top.legend(fontsize=8, loc='best')
    fig.suptitle('end-effector paths (colour = episode)')
    fig.tight_layout()
    return save_figure(fig, png)


def _continuous_flags(joint_names: Sequence[str]) -> list[bool]:
    return [
        bool(kin.CONTINUOUS[kin.JOINT_NAMES.index(n)]) if n in kin.JOINT_NAMES else False
        for n in joint_names
    ]


def plot_commanded_vs_measured(
    episode: Mapping[str, Any],
    joint_names: Sequence[str],
    png: PathLike,
    continuous: Sequence[bool] | None = None,
) -> Path:
    """
    Plot per joint the measured trace (line) against the commanded points (markers).

    Each command's points are drawn at receipt time + ``time_from_start`` and joined by a thin
    line, so chunk boundaries show. Continuous joints (default: the Gen3's by name) are drawn
    unwrapped, each command shifted by a multiple of 2π next to the measured angle at receipt.
    """
    names = list(joint_names)
    flags = list(continuous) if continuous is not None else _continuous_flags(names)
    measured = episode.get('measured', {})
    m_names = list(measured.get('joint_names', kin.JOINT_NAMES))
    t = np.asarray(measured.get('t_s', []), dtype=np.float64)
    q_all = np.asarray(measured.get('positions', []), dtype=np.float64).reshape(len(t), -1)
    fig = new_figure(8, 1.5 * len(names) + 0.8)
    axes: list[Axes] = list(fig.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0])
    for j, (name, ax) in enumerate(zip(names, axes)):
        q = q_all[:, m_names.index(name)] if name in m_names and len(t) else np.zeros(0)
        if flags[j] and q.size:
            q = np.unwrap(q)
        if q.size:
            ax.plot(t, q, 'k-', lw=1.2, label='measured')
        for k, cmd in enumerate(episode.get('commands', [])):
            c_names = list(cmd['joint_names'])
            if name not in c_names:
                continue
            col = c_names.index(name)
            times = float(cmd['t_s']) + np.asarray(cmd['time_from_start'], dtype=np.float64)
            pos = np.array([float(p[col]) for p in cmd['positions']])
            if flags[j] and q.size:
                ref = float(np.interp(float(cmd['t_s']), t, q))
                pos = pos + 2 * np.pi * np.round((ref - pos[0]) / (2 * np.pi))
            ax.plot(times, pos, '-', color='tab:red', lw=0.6, alpha=0.6)
            label = 'commanded' if k == 0 else '_nolegend_'
            ax.plot(times, pos, '.', color='tab:red', ms=4, label=label)
        ax.set_ylabel(f'{name}\n[rad]', fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].legend(loc='upper right', fontsize=8)
    axes[-1].set_xlabel('time since enable [s]')
    fig.suptitle(f'seed {episode.get("seed", "?")}: commanded vs measured joint positions')
    fig.tight_layout()
    return save_figure(fig, png)


def write_all(results: Results, out_dir: PathLike, max_joint_plots: int = 3) -> list[Path]:
    """
    Write every plot of an evaluation into ``out_dir``; return the paths.

    ``closed_loop_success.png``, ``closed_loop_ee_paths.png`` and
    ``closed_loop_joints_seed<seed>.png`` for the first ``max_joint_plots`` episodes.
    """
    out = Path(out_dir)
    episodes = _episodes(results)
    paths = [
        plot_success(episodes, out / 'closed_loop_success.png'),
        plot_ee_paths(episodes, out / 'closed_loop_ee_paths.png'),
    ]
    for e in episodes[:max_joint_plots]:
        names = list(e.get('measured', {}).get('joint_names', kin.JOINT_NAMES))
        paths.append(
            plot_commanded_vs_measured(e, names, out / f'closed_loop_joints_seed{e["seed"]}.png')
        )
    return paths
