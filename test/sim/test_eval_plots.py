"""PNG plots of a closed-loop evaluation (``sim.eval_plots``) on synthetic results."""

from pathlib import Path

from kinova_policy_ros.core import kinematics as kin
from kinova_policy_ros.sim import eval_plots
from matplotlib.figure import Figure
import numpy as np
import pytest

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC


def _command(t_s: float, times: list[float], pos: list[float], vel: list[float], n: int = 7):
    return {
        't_s': t_s,
        'joint_names': list(kin.JOINT_NAMES[:n]),
        'time_from_start': times,
        'positions': [[p] * n for p in pos],
        'velocities': [[v] * n for v in vel],
        'stamp_ns': 0,
    }


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


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """Keep the figures the plots save (instead of writing PNGs)."""
    kept: list[Figure] = []

    def keep(fig: Figure, path: object) -> Path:
        kept.append(fig)
        return Path(str(path))

    monkeypatch.setattr(eval_plots, 'save_figure', keep)
    return kept


def test_success_plot_shows_each_episode_and_the_rate(figures: list[Figure]):
    episodes = [_synthetic_episode(s, s % 4 == 0) for s in range(1, 9)]
    eval_plots.plot_success({'episodes': episodes}, 'x.png')
    ax = figures[0].axes[0]
    assert ax.get_title() == 'closed loop: 8 episodes, 25 % within 3 cm'
    bars = ax.patches
    assert [round(b.get_height(), 6) for b in bars] == [120.0, 120.0, 120.0, 10.0] * 2
    green = [b.get_facecolor() for b in bars][3]
    assert green != bars[0].get_facecolor()
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(s) for s in range(1, 9)]


def test_ee_path_plot_has_a_path_and_a_target_per_episode(figures: list[Figure]):
    episodes = [_synthetic_episode(1, True), {'seed': 2, 'target': [0.4, 0.0, 0.1]}]
    eval_plots.plot_ee_paths(episodes, 'x.png')
    top, side = figures[0].axes
    # episode 1: path, start, end, target; episode 2 (no path): its target only
    assert len(top.lines) == 4 + 1 + 3  # + the three legend markers
    np.testing.assert_allclose(side.lines[0].get_xydata()[-1], [0.5, 0.2])  # x-z at the end


def test_continuous_joints_are_drawn_unwrapped_and_commands_follow(figures: list[Figure]):
    episode = _synthetic_episode(1, True)
    # commands near the wrapped angle -π + 0.14: joint_3 reads ~π + 0.14 unwrapped
    pos = [-3.0, -2.99, -2.98]
    episode['commands'] = [_command(tc, [0.1, 0.2, 0.3], pos, [0.1] * 3) for tc in (0.1, 0.5, 0.9)]
    eval_plots.plot_commanded_vs_measured(episode, ['joint_3', 'joint_2'], 'x.png')
    joint_3, joint_2 = figures[0].axes
    measured = joint_3.lines[0].get_ydata()
    assert np.abs(np.diff(measured)).max() < 0.01  # no 2π jump at +π
    assert measured[-1] == pytest.approx(3.5)
    # each command's points sit next to the measured angle (shifted by 2π on joint_3 only)
    commanded = np.concatenate([line.get_ydata() for line in joint_3.lines[1::2]])
    assert commanded == pytest.approx((np.array(pos) + 2 * np.pi).tolist() * 3)
    commanded_2 = np.concatenate([line.get_ydata() for line in joint_2.lines[1::2]])
    assert commanded_2 == pytest.approx(pos * 3)  # joint_2 is limited: drawn as received
    times = joint_3.lines[1].get_xdata()
    assert times == pytest.approx([0.2, 0.3, 0.4])  # receipt time + time_from_start
    assert joint_3.get_ylabel() == 'joint_3\n[rad]'


def test_write_all_plots_the_first_episodes_only(figures: list[Figure], tmp_path: Path):
    episodes = [_synthetic_episode(s, True) for s in (5, 6, 7, 8)]
    names = [p.name for p in eval_plots.write_all(episodes, tmp_path)]
    assert names == [
        'closed_loop_success.png', 'closed_loop_ee_paths.png', 'closed_loop_joints_seed5.png',
        'closed_loop_joints_seed6.png', 'closed_loop_joints_seed7.png',
    ]
    assert len(figures[2].axes) == 7  # one panel per joint
