"""
A learning curve: closed-loop success against the number of demonstrations.

``python -m kinova_policy_ros.learning_curve --profile default --demos 50,100,200,400,1500
--train-seeds 0,1,2 --eval-episodes 50 --eval inprocess|dds --out runs/learning_curve
[--steps N] [--resume]``

1. **record** — the expert demonstrations of the demo (seeds 1000..) once, for the largest
   count, with ``demo.record`` and ``demo.convert``;
2. **train** — for every count N and training seed S, the profile's recipe on the first N
   converted episodes (nested subsets: every count contains the smaller ones) with
   ``train.seed=S``, into ``OUT/n{N}_s{S}/``;
3. **evaluate** — every final checkpoint on the held-out seeds 0..M-1 (never recorded), in
   process (``sim.closed_loop``, default) or over DDS (``sim.ros.dds_eval``, like the demo);
4. **aggregate** — per N, success within 3 cm and 5 cm per seed and pooled over the seeds with
   95 % Wilson intervals, and the median final distance: ``learning_curve.json``,
   ``learning_curve.md`` and ``learning_curve.png``.

``--resume`` continues an interrupted run: the recording, every run whose final checkpoint
exists and every finished evaluation (``OUT/n{N}_s{S}/eval.json``) are kept.
"""

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
import json
import math
import os
from pathlib import Path
import shutil
import sys
import time
from typing import TypedDict

from kinova_policy_ros import demo
from kinova_policy_ros.core.errors import ConfigError, KinovaPolicyError
from kinova_policy_ros.core.figures import new_figure, save_figure
from kinova_policy_ros.data.schema import atomic_write
from kinova_policy_ros.sim.eval_metrics import wilson_interval
import numpy as np

DEFAULT_DEMOS = '50,100,200,400,1500'
EVAL_MODES = ('inprocess', 'dds')
SUCCESS_KEYS = ('3cm', '5cm')
# The settings a resumed run must share with the run it continues (they change the results).
RESUME_KEYS: tuple[str, ...] = ('profile', 'camera_profile', 'steps', 'train_overrides')
RESUME_KEYS += ('eval_mode', 'eval_episodes', 'episode_duration_s')


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


@dataclass(frozen=True)
class Settings:
    """The checked command line."""

    profile: str
    demos: tuple[int, ...]
    train_seeds: tuple[int, ...]
    eval_episodes: int
    eval_mode: str
    out: Path
    steps: int | None
    resume: bool
    episode_duration_s: float
    camera_profile: str
    train_overrides: tuple[str, ...]


# -- command line ------------------------------------------------------------------------------


def parse_int_list(text: str, flag: str, minimum: int) -> tuple[int, ...]:
    """Parse ``'1,2,3'``: integers >= ``minimum``, no duplicates (ConfigError naming ``flag``)."""
    parts = text.split(',')
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise ConfigError(f'{flag} {text!r}: expected comma-separated integers') from None
    bad = [v for v in values if v < minimum]
    if bad:
        raise ConfigError(f'{flag} {text!r}: {bad[0]} is below {minimum}')
    if len(set(values)) != len(values):
        raise ConfigError(f'{flag} {text!r}: a value appears twice')
    return values


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog='python -m kinova_policy_ros.learning_curve',
        description=(__doc__ or '').strip().split('\n\n')[0],
    )
    ap.add_argument('--profile', default='default', help=f'one of {sorted(demo.PROFILES)}')
    ap.add_argument('--demos', default=DEFAULT_DEMOS, help='demonstration counts, comma-separated')
    ap.add_argument('--train-seeds', default='0,1,2', help='training seeds, comma-separated')
    ap.add_argument('--eval-episodes', default='50', help='held-out seeds 0..M-1 per checkpoint')
    ap.add_argument('--eval', default='inprocess', help='inprocess (default) or dds')
    ap.add_argument('--out', type=Path, default=Path('runs') / 'learning_curve')
    ap.add_argument('--steps', default=None, help="training steps (default: the profile's)")
    ap.add_argument('--resume', action='store_true', help='continue the run in --out')
    ap.add_argument('--episode-duration', default=None, help='closed-loop episode length, s')
    ap.add_argument('--camera-profile', default='small', help='small or kinova_vision')
    ap.add_argument(
        '--train-override', action='append', default=[], metavar='KEY=VALUE',
        help='extra training override after the recipe (repeatable), e.g. train.batch_size=8',
    )
    return ap


def _positive_int(text: str, flag: str) -> int:
    values = parse_int_list(text, flag, 1)
    if len(values) != 1:
        raise ConfigError(f'{flag} {text!r}: expected one integer')
    return values[0]


def parse_args(argv: Sequence[str] | None = None) -> Settings:
    """Parse and check the command line (ConfigError naming the flag and the value)."""
    from kinova_policy_ros.sim.camera import PROFILES as CAMERAS

    args = _parser().parse_args(argv)
    for flag, value, choices in (
        ('--profile', args.profile, sorted(demo.PROFILES)),
        ('--eval', args.eval, list(EVAL_MODES)),
        ('--camera-profile', args.camera_profile, sorted(CAMERAS)),
    ):
        if value not in choices:
            raise ConfigError(f'{flag} {value!r}: not one of {choices}')
    profile = demo.PROFILES[args.profile]
    episodes = _positive_int(args.eval_episodes, '--eval-episodes')
    if episodes > demo.DEMO_SEED0:
        raise ConfigError(
            f'--eval-episodes {episodes}: at most {demo.DEMO_SEED0} (seeds from '
            f'{demo.DEMO_SEED0} on are the recorded demonstrations)'
        )
    duration = profile.episode_duration_s
    if args.episode_duration is not None:
        try:
            duration = float(args.episode_duration)
        except ValueError:
            duration = math.nan
        if not (math.isfinite(duration) and duration > 0):
            raise ConfigError(
                f'--episode-duration {args.episode_duration!r}: expected seconds > 0'
            )
    settings = Settings(
        profile=profile.name,
        demos=tuple(sorted(parse_int_list(args.demos, '--demos', 1))),
        train_seeds=parse_int_list(args.train_seeds, '--train-seeds', 0),
        eval_episodes=episodes,
        eval_mode=args.eval,
        out=args.out,
        steps=None if args.steps is None else _positive_int(args.steps, '--steps'),
        resume=bool(args.resume),
        episode_duration_s=duration,
        camera_profile=args.camera_profile,
        train_overrides=tuple(args.train_override),
    )
    training_config(settings, 0)  # a bad override fails now, not after the recording
    return settings


def training_overrides(settings: Settings, seed: int) -> tuple[str, ...]:
    """Return the recipe of the profile, then the extra overrides, the steps and the seed."""
    out = [*demo.PROFILES[settings.profile].train_overrides, *settings.train_overrides]
    if settings.steps is not None:
        out.append(f'train.num_steps={settings.steps}')
    out.append(f'train.seed={seed}')
    return tuple(out)


def training_config(settings: Settings, seed: int) -> int:
    """Load the training configuration of ``seed``; return its ``train.num_steps``."""
    from kinova_policy_ros.core.config import load_experiment_config

    try:
        cfg = load_experiment_config(demo.REPO_CONFIG, list(training_overrides(settings, seed)))
    except ConfigError as err:
        raise ConfigError(f'--train-override {list(settings.train_overrides)}: {err}') from err
    return cfg.train.num_steps


# -- stages ------------------------------------------------------------------------------------


def _settings_json(settings: Settings) -> dict[str, object]:
    d: dict[str, object] = json.loads(json.dumps(asdict(settings), default=str))
    return d  # tuples as lists, the path as a string


def prepare_out(settings: Settings) -> None:
    """Create ``--out``; refuse a used one without ``--resume`` or with other settings."""
    out, path = settings.out, settings.out / 'settings.json'
    if out.exists() and any(out.iterdir()):
        if not settings.resume:
            raise ConfigError(f'--out {out}: not empty; pass --resume to continue that run')
        if path.is_file():
            before = json.loads(path.read_text())
            now = _settings_json(settings)
            for key in RESUME_KEYS:
                if before.get(key) != now[key]:
                    raise ConfigError(
                        f'--resume: {key} was {before.get(key)!r} in {out}, now {now[key]!r}'
                    )
    out.mkdir(parents=True, exist_ok=True)
    write_json(path, _settings_json(settings))


def record_episodes(settings: Settings) -> list[Path]:
    """Record and convert the demonstrations of the largest count (kept with ``--resume``)."""
    out, needed = settings.out, max(settings.demos)
    episodes = out / 'episodes'
    have = sorted(episodes.glob('*.npz')) if episodes.is_dir() else []
    if settings.resume and len(have) >= needed:
        print(f'[record] reusing {len(have)} converted episodes in {episodes}', flush=True)
        return have
    for folder in (out / 'bags', episodes):
        shutil.rmtree(folder, ignore_errors=True)
    profile = replace(demo.PROFILES[settings.profile], demonstrations=needed)
    bags = demo.record(out / 'bags', profile, settings.camera_profile)
    return demo.convert(bags, episodes)


def subset(episodes: Sequence[Path], n: int, folder: Path) -> Path:
    """Link the first ``n`` episodes into ``folder`` (ConfigError when fewer were recorded)."""
    if n > len(episodes):
        raise ConfigError(f'--demos {n}: only {len(episodes)} episodes were recorded')
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for path in sorted(episodes)[:n]:
        (folder / path.name).symlink_to(path.resolve())
    return folder


def train_run(settings: Settings, data: Path, run_dir: Path, seed: int) -> Path:
    """Train one (N, seed) run with ``demo.train``; return its final checkpoint."""
    steps = training_config(settings, seed)
    final = run_dir / 'checkpoints' / f'step_{steps:06d}'
    if settings.resume and final.is_dir():
        print(f'[train] {run_dir.name}: final checkpoint exists, skipped', flush=True)
        return final
    shutil.rmtree(run_dir, ignore_errors=True)  # an interrupted run starts again
    profile = replace(
        demo.PROFILES[settings.profile], train_overrides=training_overrides(settings, seed)
    )
    demo.train(data, run_dir, profile, settings.out / 'cache')
    if not final.is_dir():
        raise KinovaPolicyError(f'{run_dir}: training stopped before {final.name}')
    return final


def _outcome(seed: int, distance: float, success_3cm: bool, success_5cm: bool) -> Outcome:
    return {
        'seed': int(seed),
        'final_distance': float(distance),
        'success_3cm': bool(success_3cm),
        'success_5cm': bool(success_5cm),
    }


def evaluate_inprocess(
    checkpoint: Path, seeds: Sequence[int], duration_s: float, camera_profile: str
) -> list[Outcome]:
    """Run the in-process closed loop (``sim.closed_loop``) of ``checkpoint`` on ``seeds``."""
    from kinova_policy_ros.policy.inference import PolicyRunner
    from kinova_policy_ros.sim.camera import camera_profile as get_camera
    from kinova_policy_ros.sim.closed_loop import DEMO_NODE_PARAMS, evaluate
    from kinova_policy_ros.sim.env import Gen3Sim

    runner = PolicyRunner.from_checkpoint(checkpoint, device='auto')
    with Gen3Sim(get_camera(camera_profile).scene()) as sim:
        results = evaluate(
            sim,
            runner,
            seeds,
            duration_s=duration_s,
            velocity_scale=DEMO_NODE_PARAMS['velocity_scale'],
        )
    return [_outcome(r.seed, r.final_distance, r.success, r.success_5cm) for r in results]


def evaluate_dds(
    checkpoint: Path, seeds: Sequence[int], out: Path, duration_s: float, camera_profile: str
) -> list[Outcome]:
    """Run the closed loop over DDS (``sim_node`` + ``policy_node``) as the demo does."""
    from kinova_policy_ros.sim.closed_loop import DEMO_NODE_PARAMS
    from kinova_policy_ros.sim.ros.dds_eval import evaluate_over_dds

    closed = evaluate_over_dds(
        checkpoint.resolve(),
        list(seeds),
        out,
        duration_s=duration_s,
        policy_params=dict(DEMO_NODE_PARAMS),
        camera_profile=camera_profile,
    )
    return [
        _outcome(e['seed'], e['final_distance'], e['success_3cm'], e['success_5cm'])
        for e in closed['episodes']
    ]


def evaluate_run(settings: Settings, checkpoint: Path, run_dir: Path) -> list[Outcome]:
    """Evaluate ``checkpoint`` (kept in ``run_dir/eval.json``, reused with ``--resume``)."""
    path = run_dir / 'eval.json'
    seeds = list(range(settings.eval_episodes))
    key = {'checkpoint': checkpoint.name, 'eval': settings.eval_mode, 'seeds': seeds}
    if settings.resume and path.is_file():
        saved = json.loads(path.read_text())
        if {k: saved.get(k) for k in key} == key:
            print(f'[eval] {run_dir.name}: evaluation exists, reused', flush=True)
            episodes: list[Outcome] = saved['episodes']
            return episodes
    args = (settings.episode_duration_s, settings.camera_profile)
    if settings.eval_mode == 'dds':
        episodes = evaluate_dds(checkpoint, seeds, run_dir / 'closed_loop', *args)
    else:
        episodes = evaluate_inprocess(checkpoint, seeds, *args)
    write_json(path, {**key, 'episodes': episodes})
    return episodes


# -- aggregation and output --------------------------------------------------------------------


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


def _pct(rate: float) -> str:
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
            cells.append(f'{_pct(p["success"][key]["rate"])} [{100 * lo:.0f}, {100 * hi:.0f}]')
            cells.append(' / '.join(_pct(s['success'][key]['rate']) for s in row['per_seed']))
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


def write_outputs(
    settings: Settings,
    results: Mapping[tuple[int, int], Sequence[Outcome]],
    timings: Mapping[str, float],
) -> dict[str, object]:
    """Write ``learning_curve.json``, ``.md`` and ``.png`` into ``--out``; return the JSON."""
    rows = aggregate(results)
    title = (
        f'Learning curve ({settings.profile} profile, {settings.eval_episodes} held-out '
        f'episodes per checkpoint, {settings.eval_mode} closed loop)'
    )
    out = settings.out
    summary: dict[str, object] = {
        'settings': _settings_json(settings),
        'train_steps': training_config(settings, settings.train_seeds[0]),
        'curve': rows,
        'runs': [
            {'demonstrations': n, 'train_seed': s, 'episodes': list(eps)}
            for (n, s), eps in sorted(results.items())
        ],
        'timings_s': dict(timings),
    }
    write_json(out / 'learning_curve.json', summary)
    (out / 'learning_curve.md').write_text(markdown_table(rows, title))
    plot_curve(rows, out / 'learning_curve.png', title)
    return summary


def run(settings: Settings) -> dict[str, object]:
    """Record, train every (N, seed), evaluate every final checkpoint, aggregate."""
    os.environ.setdefault('MUJOCO_GL', 'egl')
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    prepare_out(settings)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    demo.stage(f'record {max(settings.demos)} demonstrations ({settings.profile} profile)')
    episodes = record_episodes(settings)
    timings['record'] = time.perf_counter() - t
    results: dict[tuple[int, int], list[Outcome]] = {}
    total = len(settings.demos) * len(settings.train_seeds)
    for n in settings.demos:
        data = subset(episodes, n, settings.out / 'data' / f'n{n}')
        for seed in settings.train_seeds:
            run_dir = settings.out / f'n{n}_s{seed}'
            demo.stage(f'{len(results) + 1}/{total}: {n} demonstrations, training seed {seed}')
            t = time.perf_counter()
            checkpoint = train_run(settings, data, run_dir, seed)
            timings[f'train n{n}_s{seed}'] = time.perf_counter() - t
            t = time.perf_counter()
            results[(n, seed)] = evaluate_run(settings, checkpoint, run_dir)
            timings[f'eval n{n}_s{seed}'] = time.perf_counter() - t
            rate = rates(results[(n, seed)])
            print(
                f'[eval] {run_dir.name}: {_pct(rate["success"]["3cm"]["rate"])} within 3 cm, '
                f'{_pct(rate["success"]["5cm"]["rate"])} within 5 cm',
                flush=True,
            )
    summary = write_outputs(settings, results, timings)
    print('\n' + (settings.out / 'learning_curve.md').read_text(), flush=True)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; 2 on a configuration or pipeline error."""
    try:
        run(parse_args(argv))
    except KinovaPolicyError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
