"""
The whole job on one command, without a robot (``make demo``).

``python -m kinova_policy_ros.demo [--profile default|full] [--camera-profile small|kinova_vision]
[--out DIR]``

1. **record** — seeded expert demonstrations in the simulated Gen3, written as rosbag2 (MCAP)
   exactly as ``ros2 bag record`` stores them (rclpy serialization);
2. **convert** — ``bag_to_npz`` turns the bags into npz episodes;
3. **train** — the trainer (``config/train.yaml`` + the profile's overrides), then the offline
   evaluation on the held-out episodes;
4. **closed loop** — ``sim_node`` and ``policy_node`` run as separate processes over DDS on
   held-out seeds (targets the policy never saw);
5. **report** — success within 3 cm and 5 cm at the tool centre point between the fingertips
   (and, for comparison, at the flange), final distance, chunk-boundary velocity jumps and node
   latency, printed and written to ``report.md`` with plots.

``--camera-profile`` picks the simulated camera for recording and evaluation alike
(``kinova_policy_ros.sim.camera``: ``small`` 128x96 by default; ``kinova_vision`` the Gen3 vision
module's colour 1280x720 and depth 480x270, much larger bags and slower rendering).
"""

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
import json
import os
from pathlib import Path
import shutil
import sys
import time
from typing import Any, TYPE_CHECKING, TypedDict

from kinova_policy_ros.core.errors import KinovaPolicyError
import torch

if TYPE_CHECKING:
    from kinova_policy_ros.training.evaluate import EvalMetrics

REPO_CONFIG = Path(__file__).resolve().parents[1] / 'config' / 'train.yaml'

# Seeds: demonstrations use 1000+, held-out closed-loop targets 0..M-1 (never recorded).
DEMO_SEED0 = 1000


@dataclass(frozen=True)
class Profile:
    """How much of everything one demo run does."""

    name: str
    demonstrations: int
    eval_episodes: int
    episode_duration_s: float
    train_overrides: tuple[str, ...]
    description: str = ''
    # share of demonstrations starting at rest near the target / pausing mid-reach
    recovery_fraction: float = 0.0
    pause_fraction: float = 0.0
    # largest tilt (deg) of the tool from straight down at a recovery start
    recovery_tilt_deg: float = 0.0

    @property
    def train_steps(self) -> int | None:
        """Return ``train.num_steps`` of the overrides (None when they do not set it)."""
        key = 'train.num_steps='
        steps = [o.removeprefix(key) for o in self.train_overrides if o.startswith(key)]
        return int(steps[-1]) if steps else None


# Training measures (see README "What the demo needs"): small input images, keypoint
# (spatial-softmax) image features, joint-history dropout and noise so the policy has to look at
# the image, shared frame encodings for speed, more samples from episode starts.
_RECIPE = (
    'data.resize_hw=[48,64]',
    'model.image_pool=spatial_softmax',
    'model.keypoint_beta=5.0',
    'model.conv_channels=[32,64]',
    'model.conv_norm=group',
    'model.residual=true',
    'model.goal_head=true',
    'train.aux_goal_weight=1.0',
    'train.windows_per_segment=4',
    'train.augment.q_history_dropout=0.5',
    'train.start_oversample=4.0',
    'train.lr=1.0e-3',
    'data.val_fraction=0.05',
)

# The default profile's head predicts end-effector displacements plus a null-space motion,
# mapped to joint targets through the Gen3 Jacobian (model.action_space=task, docs/model.md):
# at 150 demonstrations it more than halves the joint head's median final error; a random
# 2-pixel image shift and a 3x weight on the goal loss lower it further (docs/experiments.md,
# "The default profile").
_TASK_RECIPE = (
    *(o for o in _RECIPE if o not in ('model.residual=true', 'train.aux_goal_weight=1.0')),
    'model.action_space=task',
    'train.augment.image_shift_px=2',
    'train.aux_goal_weight=3.0',
)

PROFILES = {
    'default': Profile(
        'default',
        demonstrations=150,
        eval_episodes=20,
        episode_duration_s=8.0,
        train_overrides=(
            *_TASK_RECIPE,
            'train.num_steps=2500',
            'train.val_every=500',
            'train.checkpoint_every=500',
        ),
        description='the whole pipeline within about 15 minutes on 2 CPU cores',
        recovery_fraction=0.35,
        pause_fraction=0.35,
    ),
    'full': Profile(
        'full',
        demonstrations=1500,
        eval_episodes=20,
        episode_duration_s=8.0,
        train_overrides=(
            *_RECIPE,
            'train.num_steps=24000',
            'train.val_every=1000',
            'train.checkpoint_every=2000',
            'train.lr_warmup_steps=200',
        ),
        description='more demonstrations and longer training (GPU when present)',
        recovery_fraction=0.35,
        pause_fraction=0.35,
    ),
}


def worker_count() -> int:
    """Return how many processes record and convert: the usable CPUs, at most 8."""
    return max(1, min(8, len(os.sched_getaffinity(0))))


def fmt(value: float | None, scale: float = 1.0, spec: str = '.3f') -> str:
    """Format a figure that may be missing (None: not measured)."""
    return 'n/a' if value is None else format(value * scale, spec)


def stage(name: str) -> None:
    print(f'\n=== {name} ===', flush=True)


def record(out: Path, profile: Profile, camera_profile: str = 'small') -> list[Path]:
    from kinova_policy_ros.sim.camera import camera_profile as get_camera
    from kinova_policy_ros.sim.expert import DemoVariation
    from kinova_policy_ros.sim.ros.record_demos import record_offline, RecordOptions
    from kinova_policy_ros.sim.ros.recorder import RecordingRates

    camera = get_camera(camera_profile)
    seeds = list(range(DEMO_SEED0, DEMO_SEED0 + profile.demonstrations))
    options = RecordOptions(
        scene=camera.scene(),
        rates=RecordingRates(camera_hz=camera.rate_hz),
        variation=DemoVariation(
            recovery_fraction=profile.recovery_fraction,
            pause_fraction=profile.pause_fraction,
            recovery_tilt_deg=profile.recovery_tilt_deg,
        ),
    )
    entries = record_offline(out, seeds, options, workers=worker_count())
    ok = sum(bool(e['success']) for e in entries)
    recovery = sum(bool(e['recovery_start']) for e in entries)
    pauses = sum(e['pause_s'] > 0 for e in entries)
    print(
        f'[record] {len(entries)} expert demonstrations ({recovery} recovery starts, {pauses} '
        f'with a pause), {ok} reached the target',
        flush=True,
    )
    return sorted(p for p in out.iterdir() if p.is_dir() and p.name.startswith('episode_'))


def convert(bags: Sequence[Path], out: Path) -> list[Path]:
    from kinova_policy_ros.bag.cli import convert_bags, load_options, summary_table

    options = load_options(
        None, workers=worker_count(), overwrite=True, progress=False, compress=False
    )
    results = convert_bags(bags, out, options)
    failed = [r for r in results if not r.ok]
    print(summary_table(results), flush=True)
    if failed:
        raise KinovaPolicyError(f'{len(failed)} bag(s) failed to convert: {failed[0].error}')
    return sorted(out.glob('*.npz'))


def train(data: Path, out: Path, profile: Profile, cache: Path) -> Path:
    from kinova_policy_ros.core.config import load_experiment_config
    from kinova_policy_ros.training.train import Trainer

    overrides = list(profile.train_overrides)
    if torch.cuda.is_available():
        overrides.append('train.device=cuda')
    cfg = load_experiment_config(REPO_CONFIG, overrides)
    trainer = Trainer(cfg, data, out, cache_dir=cache)
    print(
        f'[train] {len(trainer.train_ds)} samples, {len(trainer.val_files)} held-out '
        f'episodes, device {trainer.device}',
        flush=True,
    )
    trainer.run()
    return out / 'checkpoints' / 'best'


class DemoSummary(TypedDict):
    """``summary.json``: the report's figures, the raw results, the plots and the timings."""

    profile: str
    camera_profile: str
    table: dict[str, str]
    closed_loop: Mapping[str, object]
    offline: dict[str, object]
    checkpoint: str
    plots: list[str]
    timings_s: dict[str, float]


def write_report(out: Path, summary: DemoSummary) -> Path:
    lines = [
        f'# kinova_policy_ros demo ({summary["profile"]})',
        '',
        '| figure | value |',
        '|---|---|',
    ]
    for key, value in summary['table'].items():
        lines.append(f'| {key} | {value} |')
    lines += ['', '## Plots', '']
    for png in summary['plots']:
        lines.append(f'![{Path(png).stem}]({png})')
    lines += ['', '## Timings (s)', '']
    lines += [f'- {k}: {v:.0f}' for k, v in summary['timings_s'].items()]
    path = out / 'report.md'
    path.write_text('\n'.join(lines) + '\n')
    (out / 'summary.json').write_text(json.dumps(summary, indent=2, default=str))
    return path


def report_table(
    s: Mapping[str, Any],  # the closed-loop summary of sim.ros.dds_eval
    offline: 'EvalMetrics',
    demonstrations: int,
    episodes: int,
    total_s: float,
    train_steps: int | None = None,
) -> dict[str, str]:
    """Return the report's figures: closed-loop summary ``s``, offline errors, counts, time."""
    return {
        'success within 3 cm': (
            f'{s["success_3cm"]:.0%} of {s["episodes"]} ({demonstrations} demonstrations, '
            f'{train_steps if train_steps is not None else "n/a"} training steps, '
            f'{total_s / 60:.1f} min)'
        ),
        'success within 5 cm': f'{s["success_5cm"]:.0%} of {s["episodes"]}',
        'success within 3 cm / 5 cm at the flange': (
            f'{fmt(s.get("success_3cm_flange"), 1, ".0%")} / '
            f'{fmt(s.get("success_5cm_flange"), 1, ".0%")}'
        ),
        'final distance, median / mean': (
            f'{fmt(s["median_final_distance"], 100, ".1f")} / '
            f'{fmt(s["mean_final_distance"], 100, ".1f")} cm'
        ),
        'chunk-boundary velocity jump, median / p95': (
            f'{fmt(s["boundary_jump_median"])} / {fmt(s["boundary_jump_p95"])} rad/s'
        ),
        'speed dips: all / not in the plans (hand-over) / jerk RMS (median)': (
            f'{s.get("speed_dips")} / {s.get("handover_dips")} / '
            f'{fmt(s.get("jerk_rms_median"), 1, ".1f")} rad/s³'
        ),
        'time to target within 3 cm, median': (
            f'{fmt(s.get("time_to_target_median_s"), 1, ".2f")} s'
        ),
        'node inference latency p50 / p99': (
            f'{fmt(s["latency_p50_ms"], 1, ".1f")} / {fmt(s["latency_p99_ms"], 1, ".1f")} ms'
        ),
        'offline error (held-out demos), step 1 / step T': (
            f'{offline["mae_rad_per_step"][0] * 57.2958:.2f} / '
            f'{offline["mae_rad_per_step"][-1] * 57.2958:.2f} deg'
        ),
        'demonstrations recorded / episodes converted': f'{demonstrations} / {episodes}',
        'wall time': f'{total_s / 60:.1f} min',
    }


def run(
    profile: Profile, out: Path, fresh: bool, camera_profile: str = 'small'
) -> DemoSummary:
    from kinova_policy_ros.sim.closed_loop import DEMO_NODE_PARAMS
    from kinova_policy_ros.sim.ros.dds_eval import evaluate_over_dds
    from kinova_policy_ros.training.evaluate import evaluate

    if fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault('MUJOCO_GL', 'egl')
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    timings: dict[str, float] = {}
    t_all = time.perf_counter()

    stage(
        f'1/5 record {profile.demonstrations} demonstrations ({profile.name} profile, camera '
        f'{camera_profile})'
    )
    t = time.perf_counter()
    bags = record(out / 'bags', profile, camera_profile)
    timings['record'] = time.perf_counter() - t

    stage('2/5 convert rosbag2 -> npz')
    t = time.perf_counter()
    episodes = convert(bags, out / 'episodes')
    timings['convert'] = time.perf_counter() - t

    stage('3/5 train')
    t = time.perf_counter()
    ckpt = train(out / 'episodes', out / 'train', profile, out / 'cache')
    offline = evaluate(ckpt, out / 'episodes', out / 'offline_eval', cache_dir=out / 'cache')
    timings['train'] = time.perf_counter() - t

    stage(f'4/5 closed loop over DDS on {profile.eval_episodes} held-out targets')
    t = time.perf_counter()
    closed = evaluate_over_dds(
        ckpt.resolve(),
        list(range(profile.eval_episodes)),
        out / 'closed_loop',
        duration_s=profile.episode_duration_s,
        policy_params=dict(DEMO_NODE_PARAMS),
        camera_profile=camera_profile,
    )
    timings['closed_loop'] = time.perf_counter() - t
    timings['total'] = time.perf_counter() - t_all

    stage('5/5 report')
    s = closed['summary']
    table = report_table(
        s, offline, len(bags), len(episodes), timings['total'], profile.train_steps
    )
    summary: DemoSummary = {
        'profile': profile.name,
        'camera_profile': camera_profile,
        'table': table,
        'closed_loop': s,
        'offline': {
            'mae_rad': offline['mae_rad'],
            'mae_rad_per_step': offline['mae_rad_per_step'],
            'num_samples': offline['num_samples'],
        },
        'checkpoint': str(ckpt.resolve()),
        'plots': sorted(str(p.relative_to(out)) for p in out.rglob('*.png')),
        'timings_s': timings,
    }
    report = write_report(out, summary)
    width = max(len(k) for k in table)
    print(f'\nkinova_policy_ros demo, {profile.name} profile')
    for k, v in table.items():
        print(f'  {k:<{width}}  {v}')
    print(f'\nreport: {report}', flush=True)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog='python -m kinova_policy_ros.demo', description=__doc__.split('\n\n')[0]
    )
    ap.add_argument('--profile', choices=sorted(PROFILES), default='default')
    ap.add_argument(
        '--camera-profile',
        choices=('small', 'kinova_vision'),
        default='small',
        help='simulated camera for recording and evaluation (kinova_policy_ros.sim.camera)',
    )
    ap.add_argument('--out', type=Path, default=None, help='output folder (runs/demo_<profile>)')
    ap.add_argument('--keep', action='store_true', help='keep an existing output folder')
    args = ap.parse_args(argv)
    profile = PROFILES[args.profile]
    out = args.out or Path('runs') / f'demo_{profile.name}'
    try:
        run(profile, out, fresh=not args.keep, camera_profile=args.camera_profile)
    except KinovaPolicyError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
