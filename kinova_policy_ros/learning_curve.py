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

from kinova_policy_ros import demo
from kinova_policy_ros.core.errors import ConfigError, KinovaPolicyError
from kinova_policy_ros.learning_curve_report import (
    aggregate,
    markdown_table,
    Outcome,
    pct,
    plot_curve,
    rates,
    write_json,
)

DEFAULT_DEMOS = '50,100,200,400,1500'
EVAL_MODES = ('inprocess', 'dds')
# The settings a resumed run must share with the run it continues (they change the results).
RESUME_KEYS: tuple[str, ...] = ('profile', 'camera_profile', 'steps', 'train_overrides')
RESUME_KEYS += ('eval_mode', 'eval_episodes', 'episode_duration_s')


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
                f'[eval] {run_dir.name}: {pct(rate["success"]["3cm"]["rate"])} within 3 cm, '
                f'{pct(rate["success"]["5cm"]["rate"])} within 5 cm',
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
