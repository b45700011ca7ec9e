"""
Evaluation of a checkpoint under the distribution shifts a real Gen3 cell has (no ROS).

A *shift* turns the nominal scene into a shifted one (``SceneConfig -> SceneConfig``): dimmer or
brighter light, light from the side, a camera mounted 1 cm or 2 degrees off, a smaller, larger
or differently coloured cube, a distractor object on the table (docs/robustness.md).
:func:`evaluate_shifts` runs the in-process closed loop (``closed_loop.evaluate``) of one
checkpoint on the same seeds under each shift and reports the success rates within 3 cm / 5 cm
with 95 % Wilson intervals and the median final distance.

Command line::

    python -m kinova_policy_ros.sim.robustness --checkpoint DIR --seeds 0-19 --out DIR

prints a markdown table and writes ``DIR/robustness.json`` atomically.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
import json
import math
import os
from pathlib import Path
import sys
import tempfile
from typing import TypedDict

from kinova_policy_ros.core.errors import ConfigError, KinovaPolicyError
from kinova_policy_ros.sim.camera import camera_profile
from kinova_policy_ros.sim.closed_loop import DEMO_NODE_PARAMS, evaluate
from kinova_policy_ros.sim.env import Gen3Sim
from kinova_policy_ros.sim.eval_metrics import wilson_interval
from kinova_policy_ros.sim.mjcf import camera_axes, SceneConfig, Vec3
import numpy as np

SUCCESS_3CM = 0.03
SUCCESS_5CM = 0.05
RESULT_FILE = 'robustness.json'
PROFILE = 'small'
"""The camera profile of the base scene (the demo's camera)."""


@dataclass(frozen=True)
class Shift:
    """A named change of the scene: ``shift(scene)`` returns the shifted scene."""

    name: str
    description: str
    apply: Callable[[SceneConfig], SceneConfig]

    def __call__(self, scene: SceneConfig) -> SceneConfig:
        """Return ``scene`` shifted."""
        return self.apply(scene)


def _camera_right(scene: SceneConfig, metres: float) -> SceneConfig:
    """Move the camera ``metres`` along its right axis (horizontal, across the view)."""
    x, y, z = np.asarray(scene.camera_offset_m) + metres * camera_axes(scene)[:, 0]
    return replace(scene, camera_offset_m=(float(x), float(y), float(z)))


def _rotate_camera(scene: SceneConfig, degrees: Vec3) -> SceneConfig:
    """Add ``degrees`` (about the optical x, y, z axes) to the camera mounting offset."""
    x, y, z = (a + b for a, b in zip(scene.camera_offset_deg, degrees, strict=True))
    return replace(scene, camera_offset_deg=(x, y, z))


_SHIFT_LIST = (
    Shift('nominal', 'the scene as recorded (no shift)', lambda s: s),
    Shift(
        'light_dim',
        'every light at 0.5x intensity',
        lambda s: replace(s, light_scale=s.light_scale * 0.5),
    ),
    Shift(
        'light_bright',
        'every light at 1.5x intensity',
        lambda s: replace(s, light_scale=s.light_scale * 1.5),
    ),
    Shift(
        'light_side',
        'key light from the +y side, 31 deg above the table (nominal: from above, +x +y)',
        lambda s: replace(s, light_dir=(0.0, -1.0, -0.6)),
    ),
    Shift(
        'camera_shift',
        'camera mounted 1 cm to its right (horizontal, across the view)',
        lambda s: _camera_right(s, 0.01),
    ),
    Shift(
        'camera_tilt',
        'camera pitched 2 deg (view up; about the optical x axis)',
        lambda s: _rotate_camera(s, (2.0, 0.0, 0.0)),
    ),
    Shift(
        'camera_pan',
        'camera yawed 2 deg (view to the right; about the optical y axis)',
        lambda s: _rotate_camera(s, (0.0, 2.0, 0.0)),
    ),
    Shift(
        'cube_small',
        'target cube 30 % smaller (edge 4.2 cm instead of 6 cm)',
        lambda s: replace(s, cube_half_size=s.cube_half_size * 0.7),
    ),
    Shift(
        'cube_large',
        'target cube 30 % larger (edge 7.8 cm instead of 6 cm)',
        lambda s: replace(s, cube_half_size=s.cube_half_size * 1.3),
    ),
    Shift(
        'cube_colour',
        'target cube orange-red (0.9, 0.35, 0.1) instead of red (0.85, 0.08, 0.08)',
        lambda s: replace(s, cube_rgba=(0.9, 0.35, 0.1, 1.0)),
    ),
    Shift(
        'distractor',
        'a blue box of the cube size on the table at a seeded place away from the target',
        lambda s: replace(s, distractor='box', distractor_rgba=(0.1, 0.3, 0.85, 1.0)),
    ),
)
SHIFTS: dict[str, Shift] = {s.name: s for s in _SHIFT_LIST}
"""The named shifts, in report order."""


class ShiftResult(TypedDict):
    """What one shift scored (distances in metres)."""

    shift: str
    description: str
    scene: dict[str, object]  # the SceneConfig fields that differ from the base scene
    episodes: int
    successes_3cm: int
    success_3cm: float
    success_3cm_ci95: list[float]
    successes_5cm: int
    success_5cm: float
    success_5cm_ci95: list[float]
    median_final_distance: float
    final_distances: list[float]  # per seed, in the order of ``seeds``


class RobustnessReport(TypedDict):
    """The whole evaluation: settings and one :class:`ShiftResult` per shift."""

    checkpoint: str
    seeds: list[int]
    duration_s: float
    camera_profile: str
    shifts: list[ShiftResult]


def _scene_diff(scene: SceneConfig, base: SceneConfig) -> dict[str, object]:
    now, before = asdict(scene), asdict(base)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in now.items() if v != before[k]}


def _shift_result(
    shift: Shift, scene: SceneConfig, base: SceneConfig, final: list[float]
) -> ShiftResult:
    n = len(final)
    k3 = sum(d <= SUCCESS_3CM for d in final)
    k5 = sum(d <= SUCCESS_5CM for d in final)
    return ShiftResult(
        shift=shift.name,
        description=shift.description,
        scene=_scene_diff(scene, base),
        episodes=n,
        successes_3cm=k3,
        success_3cm=k3 / n,
        success_3cm_ci95=list(wilson_interval(k3, n)),
        successes_5cm=k5,
        success_5cm=k5 / n,
        success_5cm_ci95=list(wilson_interval(k5, n)),
        median_final_distance=float(np.median(final)),
        final_distances=final,
    )


def resolve_shifts(names: Sequence[str] | None) -> list[Shift]:
    """Return the shifts ``names`` (all of :data:`SHIFTS` for ``None``); ConfigError otherwise."""
    if names is None:
        return list(SHIFTS.values())
    unknown = [n for n in names if n not in SHIFTS]
    if unknown or not names:
        raise ConfigError(f'shifts {list(names)!r}: choose from {list(SHIFTS)}')
    return [SHIFTS[n] for n in names]


def evaluate_shifts(
    checkpoint: str | os.PathLike[str],
    seeds: Sequence[int],
    shifts: Sequence[str] | None = None,
    *,
    base: SceneConfig | None = None,
    duration_s: float = 8.0,
    device: str = 'cpu',
    start_noise: float = 0.1,
    progress: Callable[[ShiftResult], None] | None = None,
) -> RobustnessReport:
    """
    Score ``checkpoint`` on ``seeds`` under each shift (default: all of :data:`SHIFTS`).

    Each shift builds a :class:`Gen3Sim` of ``shift(base)`` (``base``: the ``small`` camera
    profile's scene) and runs ``closed_loop.evaluate`` for ``duration_s`` simulated seconds per
    seed with the checkpoint's ``PolicyRunner``; ``progress`` gets each shift's result as it is
    done. Same seeds, same numbers (the loop is deterministic).
    """
    seeds = [int(s) for s in seeds]
    if not seeds or min(seeds) < 0:
        raise ConfigError(f'evaluate_shifts: seeds {seeds!r} must be >= 0 and not empty')
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise ConfigError(f'evaluate_shifts: duration_s must be > 0, got {duration_s!r}')
    chosen = resolve_shifts(shifts)
    base_scene = base if base is not None else camera_profile(PROFILE).scene()
    from kinova_policy_ros.policy.inference import PolicyRunner  # torch: only when evaluating

    runner = PolicyRunner.from_checkpoint(checkpoint, device=device)
    results: list[ShiftResult] = []
    for shift in chosen:
        scene = shift(base_scene)
        with Gen3Sim(scene, start_noise=start_noise) as sim:
            episodes = evaluate(
                sim,
                runner,
                seeds,
                duration_s=duration_s,
                velocity_scale=DEMO_NODE_PARAMS['velocity_scale'],
            )
        result = _shift_result(shift, scene, base_scene, [e.final_distance for e in episodes])
        results.append(result)
        if progress is not None:
            progress(result)
    return RobustnessReport(
        checkpoint=str(checkpoint),
        seeds=seeds,
        duration_s=float(duration_s),
        camera_profile=PROFILE if base is None else 'custom',
        shifts=results,
    )


def _rate(k: int, n: int, ci: Sequence[float]) -> str:
    return f'{k}/{n} ({k / n:.0%}) | {ci[0]:.0%}-{ci[1]:.0%}'


def format_table(report: RobustnessReport) -> str:
    """Return the report as a markdown table, one row per shift."""
    lines = [
        '| shift | success 3 cm | 95 % CI | success 5 cm | 95 % CI | median final distance |',
        '|---|---|---|---|---|---|',
    ]
    for r in report['shifts']:
        n = r['episodes']
        lines.append(
            f"| {r['shift']} | {_rate(r['successes_3cm'], n, r['success_3cm_ci95'])} | "
            f"{_rate(r['successes_5cm'], n, r['success_5cm_ci95'])} | "
            f"{r['median_final_distance'] * 100:.1f} cm |"
        )
    return '\n'.join(lines)


def write_report(report: RobustnessReport, out_dir: str | os.PathLike[str]) -> Path:
    """Write ``out_dir/robustness.json`` atomically (temp file in the folder, then rename)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / RESULT_FILE
    fd, tmp = tempfile.mkstemp(prefix=f'.{RESULT_FILE}.', dir=out)
    try:
        with os.fdopen(fd, 'w') as f:
            json.dump(report, f, indent=2)
            f.write('\n')
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def parse_seeds(text: str) -> list[int]:
    """Parse ``--seeds``: ``0-19``, ``3,5,8`` or both (``0-4,10``); ConfigError naming it."""
    seeds: list[int] = []
    try:
        for part in text.split(','):
            first, sep, last = part.strip().partition('-')
            lo, hi = int(first), int(last) if sep else int(first)
            if lo < 0 or hi < lo:
                raise ValueError(part)
            seeds += range(lo, hi + 1)
    except ValueError:
        raise ConfigError(
            f'--seeds {text!r}: expected seeds >= 0 as A-B ranges or single values, '
            'comma-separated (e.g. 0-19 or 0,3,5)'
        ) from None
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f'--seeds {text!r}: a seed appears twice')
    return seeds


def parse_shifts(text: str) -> list[str]:
    """Parse ``--shifts`` (comma-separated names of :data:`SHIFTS`); ConfigError naming it."""
    names = [n.strip() for n in text.split(',') if n.strip()]
    unknown = [n for n in names if n not in SHIFTS]
    if unknown or not names:
        raise ConfigError(f'--shifts {text!r}: unknown {unknown}; choose from {list(SHIFTS)}')
    return names


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    p = argparse.ArgumentParser(
        prog='python -m kinova_policy_ros.sim.robustness',
        description='Score a checkpoint in the simulator under lighting, camera, cube and '
        'distractor shifts (docs/robustness.md).',
    )
    p.add_argument('--checkpoint', required=True, type=Path, help='checkpoint directory')
    p.add_argument('--seeds', default='0-19', help='episodes: 0-19, 0,3,5 or 0-4,10')
    p.add_argument('--shifts', default=None, help=f'comma-separated, of {",".join(SHIFTS)}')
    p.add_argument('--out', required=True, type=Path, help=f'folder of {RESULT_FILE}')
    p.add_argument('--duration', type=float, default=8.0, help='simulated s per episode')
    p.add_argument('--device', default='cpu', help='torch device of the policy (cpu, cuda)')
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: evaluate, print the markdown table, write ``robustness.json``."""
    args = build_parser().parse_args(argv)
    try:
        seeds = parse_seeds(args.seeds)
        shifts = None if args.shifts is None else parse_shifts(args.shifts)
        if not (math.isfinite(args.duration) and args.duration > 0):
            raise ConfigError(f'--duration {args.duration!r}: must be > 0 (simulated seconds)')
        if not args.checkpoint.is_dir():
            raise ConfigError(f'--checkpoint {str(args.checkpoint)!r}: not a directory')
    except ConfigError as err:
        print(f'robustness: {err}', file=sys.stderr)
        return 2

    def progress(r: ShiftResult) -> None:
        print(
            f"robustness: {r['shift']}: {r['successes_3cm']}/{r['episodes']} within 3 cm, "
            f"median final distance {r['median_final_distance'] * 100:.1f} cm",
            file=sys.stderr,
        )

    try:
        report = evaluate_shifts(
            args.checkpoint,
            seeds,
            shifts,
            duration_s=args.duration,
            device=args.device,
            progress=progress,
        )
        path = write_report(report, args.out)
    except KinovaPolicyError as err:
        print(f'robustness: {err}', file=sys.stderr)
        return 1
    print(format_table(report))
    print(f'\nwritten: {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
