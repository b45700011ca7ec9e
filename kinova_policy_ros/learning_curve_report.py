"""
The learning curve's results: success rates with Wilson intervals, the table, the plot.

What :mod:`kinova_policy_ros.learning_curve` makes of its evaluations: per number of
demonstrations and training seed the successes within 3 cm and 5 cm, their 95 % Wilson
intervals and the median final distance (:func:`aggregate`), written as a markdown table
(:func:`markdown_table`), a plot (:func:`plot_curve`) and JSON (:func:`write_json`).
"""

from collections.abc import Mapping, Sequence
import json
from pathlib import Path
from typing import TypedDict

from kinova_policy_ros.core.figures import new_figure, save_figure
from kinova_policy_ros.data.schema import atomic_write
from kinova_policy_ros.sim.eval_metrics import wilson_interval
import numpy as np

SUCCESS_KEYS = ('3cm', '5cm')


class Outcome(TypedDict):
    """One closed-loop episode, as the curve needs it (distance in metres)."""

    seed: int
    final_distance: float
    success_3cm: bool
    success_5cm: bool


class Success(TypedDict):
    """Successes among the episodes, their rate and its 95 % Wilson interval ``[lo, hi]``."""

    successes: int
    rate: float
    ci: list[float]


class Rates(TypedDict):
    """A set of episodes: success within 3 cm and 5 cm (``'3cm'``, ``'5cm'``), median distance."""

    episodes: int
    success: dict[str, Success]
    median_final_distance: float


class SeedRates(Rates):
    """The rates of one training seed."""

    train_seed: int


class CountRow(TypedDict):
    """One point of the curve: N demonstrations, per training seed and pooled."""

    demonstrations: int
    per_seed: list[SeedRates]
    pooled: Rates


def succeeded(episode: Outcome, key: str) -> bool:
    """Return whether ``episode`` ended within ``key`` (``'3cm'`` or ``'5cm'``)."""
    return bool(episode['success_3cm'] if key == '3cm' else episode['success_5cm'])


def rates(episodes: Sequence[Outcome]) -> Rates:
    """Return the success counts, rates, Wilson intervals and median final distance."""
    n = len(episodes)
    success: dict[str, Success] = {}
    for key in SUCCESS_KEYS:
        k = sum(succeeded(e, key) for e in episodes)
        success[key] = {'successes': k, 'rate': k / n, 'ci': list(wilson_interval(k, n))}
    median = float(np.median([e['final_distance'] for e in episodes]))
    return {'episodes': n, 'success': success, 'median_final_distance': median}


def aggregate(results: Mapping[tuple[int, int], Sequence[Outcome]]) -> list[CountRow]:
    """Aggregate ``{(demonstrations, train_seed): episodes}``: one row per count, ascending."""
    rows: list[CountRow] = []
    for n in sorted({n for n, _ in results}):
        seeds = sorted(s for m, s in results if m == n)
        per_seed: list[SeedRates] = [{'train_seed': s, **rates(results[(n, s)])} for s in seeds]
        pooled = rates([e for s in seeds for e in results[(n, s)]])
        rows.append({'demonstrations': n, 'per_seed': per_seed, 'pooled': pooled})
    return rows


def pct(rate: float) -> str:
    """Return a rate in [0, 1] as a whole percentage, ``'45 %'``."""
    return f'{100 * rate:.0f} %'


def markdown_table(rows: Sequence[CountRow], title: str) -> str:
    """Return the curve as a markdown table (pooled rates with their 95 % Wilson intervals)."""
    lines = [
        f'# {title}',
        '',
        '| demonstrations | training seeds | episodes | success ≤ 3 cm [95 % CI] | per seed '
        '| success ≤ 5 cm [95 % CI] | per seed | median final distance |',
        '|---:|---:|---:|---|---|---|---|---:|',
    ]
    for row in rows:
        p = row['pooled']
        cells = [str(row['demonstrations']), str(len(row['per_seed'])), str(p['episodes'])]
        for key in SUCCESS_KEYS:
            lo, hi = p['success'][key]['ci']
            cells.append(f'{pct(p["success"][key]["rate"])} [{100 * lo:.0f}, {100 * hi:.0f}]')
            cells.append(' / '.join(pct(s['success'][key]['rate']) for s in row['per_seed']))
        cells.append(f'{100 * p["median_final_distance"]:.1f} cm')
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def plot_curve(rows: Sequence[CountRow], png: Path, title: str) -> Path:
    """Plot success against N (log x): a point per seed, the pooled rate with its interval."""
    fig = new_figure(11, 4.5)
    axes = fig.subplots(1, 2, sharey=True)
    counts = np.array([r['demonstrations'] for r in rows], dtype=np.float64)
    for ax, key in zip(axes, SUCCESS_KEYS):
        for r in rows:
            n_seeds = len(r['per_seed'])
            jitter = 1.0 + 0.04 * (np.arange(n_seeds) - (n_seeds - 1) / 2)
            ys = [100 * s['success'][key]['rate'] for s in r['per_seed']]
            ax.plot(r['demonstrations'] * jitter, ys, 'o', color='tab:gray', alpha=0.6, ms=4)
        pooled = np.array([100 * r['pooled']['success'][key]['rate'] for r in rows])
        ci = 100 * np.array([r['pooled']['success'][key]['ci'] for r in rows])
        yerr = np.stack([pooled - ci[:, 0], ci[:, 1] - pooled])
        ax.errorbar(counts, pooled, yerr=yerr, fmt='o-', color='tab:blue', capsize=4,
                    label='pooled over seeds, 95 % Wilson interval')
        ax.plot([], [], 'o', color='tab:gray', alpha=0.6, ms=4, label='one training seed')
        ax.set_xscale('log')
        ax.set_xticks(counts)
        ax.set_xticklabels([str(int(c)) for c in counts])
        ax.minorticks_off()
        ax.set_ylim(-2, 102)
        ax.set_xlabel('demonstrations')
        ax.set_title(f'success within {key[0]} cm')
        ax.grid(alpha=0.3)
    axes[0].set_ylabel('closed-loop success [%]')
    axes[0].legend(fontsize=8, loc='upper left')
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, png)


def write_json(path: Path, value: object) -> Path:
    """Write ``value`` as JSON, atomically."""
    text = json.dumps(value, indent=1, allow_nan=False)
    return atomic_write(path, lambda tmp: tmp.write_text(text))
