"""
The hand-over modes of the policy node side by side in the simulator (in process, simulated time).

Runs :func:`kinova_policy_ros.sim.closed_loop.run_policy_episode` — the node's
:class:`~kinova_policy_ros.policy.handover.Planner` and the simulator's emulation of the
``joint_trajectory_controller`` — for each hand-over mode on the same held-out seeds, with a
trained checkpoint (``--checkpoint``) or the scripted expert behind the policy interface
(``--expert``: perfect, consistent predictions; isolates what the hand-over itself does). Prints
one JSON object: per mode the success rate, the chunk-boundary velocity jump (median / p95 /
max), speed dips, RMS jerk and the median time to target; ``--plot`` writes the commanded vs
measured velocity of one joint across several replacements, one panel per mode.

Usage::

    python bench/bench_handover.py --checkpoint runs/demo_default/train/checkpoints/step_001000 \
        [--seeds 0-9] [--modes rest,lookahead,splice,ensemble] [--delay-ms 10] [--plot out.png]
    python bench/bench_handover.py --expert --seeds 0-9
"""

import argparse
import os
from pathlib import Path
import sys
from typing import Any

from common import report
import numpy as np

os.environ.setdefault('MUJOCO_GL', 'egl')


def parse_seeds(text: str) -> list[int]:
    """Return the seeds of ``'0-9'`` or ``'1,4,7'``."""
    if '-' in text:
        lo, hi = text.split('-', 1)
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(',') if s]


def run_mode(sim: Any, policy: Any, mode: str, seeds: list[int], args: argparse.Namespace) -> Any:
    """Return the episodes of one hand-over mode."""
    from kinova_policy_ros.policy.handover import HandoverConfig
    from kinova_policy_ros.sim.closed_loop import run_policy_episode

    return [
        run_policy_episode(
            sim,
            policy,
            seed,
            duration_s=args.duration,
            command_delay_s=args.delay_ms * 1e-3,
            velocity_scale=args.velocity_scale,
            handover=HandoverConfig(mode=mode),
        )
        for seed in seeds
    ]


def figures(episodes: list[Any]) -> dict[str, Any]:
    """Aggregate the episodes of one mode."""
    jumps = np.concatenate([e.chunk_velocity_jumps for e in episodes])
    tts = [e.time_to_success_s for e in episodes if e.time_to_success_s is not None]
    jerk = [e.jerk_rms for e in episodes if e.jerk_rms is not None]
    return {
        'success_3cm': float(np.mean([e.success for e in episodes])),
        'median_final_distance_m': float(np.median([e.final_distance for e in episodes])),
        'boundary_jump_median': float(np.median(jumps)) if jumps.size else None,
        'boundary_jump_p95': float(np.percentile(jumps, 95)) if jumps.size else None,
        'boundary_jump_max': float(jumps.max()) if jumps.size else None,
        'speed_dips': int(sum(e.speed_dips for e in episodes)),
        'jerk_rms_median': float(np.median(jerk)) if jerk else None,
        'time_to_target_median_s': float(np.median(tts)) if tts else None,
    }


def plot(results: dict[str, list[Any]], path: Path, joint: int = 1) -> None:
    """Commanded vs measured velocity of ``joint`` in the first episode, one panel per mode."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 1, figsize=(8, 2.2 * len(results)), sharex=True)
    for ax, (mode, episodes) in zip(np.atleast_1d(axes), results.items()):
        e = episodes[0]
        window = (e.fine_t_s >= 0.5) & (e.fine_t_s <= 3.5)
        ax.plot(e.fine_t_s[window], e.fine_dq_cmd[window, joint], label='commanded')
        ax.plot(e.fine_t_s[window], e.fine_dq[window, joint], label='measured', alpha=0.8)
        for t in e.replaced_at_s:
            if 0.5 <= t <= 3.5:
                ax.axvline(t, color='grey', lw=0.5, ls=':')
        ax.set_ylabel(f'{mode}\njoint_{joint + 1} rad/s')
    np.atleast_1d(axes)[0].legend(loc='upper right', fontsize=8)
    np.atleast_1d(axes)[-1].set_xlabel('time (s); dotted: a new plan replaces the running one')
    fig.tight_layout()
    tmp = path.with_name(path.name + '.tmp.png')
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument('--checkpoint', type=Path)
    src.add_argument('--expert', action='store_true')
    ap.add_argument('--seeds', default='0-9')
    ap.add_argument('--modes', default='rest,lookahead,splice,ensemble')
    ap.add_argument('--duration', type=float, default=8.0)
    ap.add_argument('--delay-ms', type=float, default=10.0, help='inference + transport latency')
    ap.add_argument('--velocity-scale', type=float, default=1.0)
    ap.add_argument('--plot', type=Path)
    args = ap.parse_args(argv)

    from kinova_policy_ros.sim.closed_loop import ExpertPolicy
    from kinova_policy_ros.sim.env import Gen3Sim
    import torch

    torch.set_num_threads(1)
    sim = Gen3Sim()
    if args.expert:
        policy: Any = ExpertPolicy(sim)
    else:
        from kinova_policy_ros.policy.inference import PolicyRunner

        policy = PolicyRunner.from_checkpoint(args.checkpoint, device='cpu')
    seeds = parse_seeds(args.seeds)
    results = {m: run_mode(sim, policy, m, seeds, args) for m in args.modes.split(',')}
    if args.plot:
        plot(results, args.plot)
    command = ' '.join(sys.argv[1:] if argv is None else argv)
    report(
        'handover',
        {
            'command': f'python bench/bench_handover.py {command}',
            'policy': 'expert' if args.expert else str(args.checkpoint),
            'seeds': seeds,
            'modes': {m: figures(e) for m, e in results.items()},
        },
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
