"""
Offline evaluation of a checkpoint on (held-out) npz episodes.

``python -m kinova_policy_ros.training.evaluate --checkpoint DIR --data DIR --out DIR`` writes
``metrics.json`` (error in radians per joint, per horizon step, and both) and PNG plots: the
error against the horizon step, and per episode the recorded joint trajectory against what a
receding-horizon controller would have commanded (the first ``action_horizon`` predicted steps,
re-planned every ``action_horizon`` frames).
"""

import argparse
from collections.abc import Sequence
import json
import os
from pathlib import Path
import sys
from typing import TypedDict

from kinova_policy_ros.core.errors import CheckpointError, KinovaPolicyError
from kinova_policy_ros.core.progress import progress as progress_bar
from kinova_policy_ros.data.dataset import KinovaJointDataset, list_episode_files
from kinova_policy_ros.policy.checkpoint import CheckpointInfo, CONFIG_FILE, load_checkpoint
from kinova_policy_ros.policy.inference import resolve_device
from kinova_policy_ros.training.plots import plot_horizon_error, plot_joint_trajectories
import numpy as np
import torch


class EvalMetrics(TypedDict):
    """``metrics.json``: errors in radians of the denormalized predictions."""

    checkpoint: str
    episodes: list[str]
    split: str
    num_samples: int
    joint_names: list[str]
    mae_rad: float
    rmse_rad: float
    mae_rad_per_joint: list[float]
    mae_rad_per_step: list[float]
    mae_rad_per_step_joint: list[list[float]]
    max_abs_error_rad: float


def validation_episodes(info: CheckpointInfo) -> list[str]:
    """Return the file names of the episodes the checkpoint's run held out (may be none)."""
    names = info.extra.get('val_episodes') or []
    if not isinstance(names, list):
        raise CheckpointError(
            f"{info.path / CONFIG_FILE}: field 'val_episodes' must be a list of file names, "
            f'got {names!r}'
        )
    return [str(n) for n in names]


def select_episodes(files: list[Path], val_names: Sequence[str], which: str) -> list[Path]:
    """``val``: the checkpoint's held-out episodes found in ``files``; ``all``: every file."""
    if which == 'all':
        return files
    chosen = [f for f in files if f.name in set(val_names)]
    if not chosen:
        raise KinovaPolicyError(
            f"none of the checkpoint's validation episodes {list(val_names)} is in the data "
            'folder; use --episodes all'
        )
    return chosen


def evaluate(
    checkpoint: str | os.PathLike[str],
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    episodes: str = 'auto',
    device: str = 'cpu',
    batch_size: int = 64,
    max_plots: int = 4,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> EvalMetrics:
    """Evaluate; write ``metrics.json`` and plots into ``out``; return the metrics."""
    dev = resolve_device(device)
    model, info = load_checkpoint(checkpoint, dev)
    files = list_episode_files(data)
    val_names = validation_episodes(info)
    if episodes == 'auto':
        episodes = 'val' if any(f.name in set(val_names) for f in files) else 'all'
    files = select_episodes(files, val_names, episodes)
    ds = KinovaJointDataset.from_config(files, info.data, info.stats, cache_dir)
    if ds.joint_names != info.joint_names:
        raise KinovaPolicyError(
            f'{data}: episodes have joint_names {list(ds.joint_names)}, the checkpoint '
            f'{list(info.joint_names)}'
        )
    qn = info.stats.q
    t_horizon = info.data.pred_horizon
    preds = np.zeros((len(ds), t_horizon, 7))
    gts = np.zeros((len(ds), t_horizon, 7))
    starts = range(0, len(ds), batch_size)
    bar = progress_bar(len(starts), 'evaluate', unit='batch', disable=not progress)
    with torch.inference_mode(), bar:
        for s in starts:
            items = [ds[i] for i in range(s, min(len(ds), s + batch_size))]
            batch = {k: torch.stack([it[k] for it in items]).to(dev) for k in items[0]}
            pred = model(batch['rgb'], batch['depth'], batch['q'], t_horizon)
            preds[s:s + len(items)] = qn.denormalize(pred.float().cpu().numpy())
            gts[s:s + len(items)] = qn.denormalize(batch['gt_joint'].cpu().numpy())
            bar.update(1)
    err = np.abs(preds - gts)  # [S,T,7] rad
    per_step_joint = err.mean(axis=0)  # [T,7]
    metrics: EvalMetrics = {
        'checkpoint': str(checkpoint),
        'episodes': [f.name for f in files],
        'split': episodes,
        'num_samples': len(ds),
        'joint_names': list(info.joint_names),
        'mae_rad': float(err.mean()),
        'rmse_rad': float(np.sqrt((err**2).mean())),
        'mae_rad_per_joint': per_step_joint.mean(axis=0).tolist(),
        'mae_rad_per_step': per_step_joint.mean(axis=1).tolist(),
        'mae_rad_per_step_joint': per_step_joint.tolist(),
        'max_abs_error_rad': float(err.max()),
    }
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_horizon_error(per_step_joint, info.joint_names, out_dir / 'horizon_error.png')
    a = info.data.action_horizon
    for e, ep in enumerate(ds.episodes[:max_plots]):
        n = int(ds.lengths[e])
        start = int(ds._ends[e - 1]) if e > 0 else 0
        executed = [preds[start + t, :a] for t in range(0, n - 1, a)]  # receding horizon
        chunk = np.concatenate(executed)[: n - 1]  # [n-1,7]: commands for frames 1..n-1
        t_s = (ep.stamp_ns[1:n] - ep.stamp_ns[0]) / 1e9
        plot_joint_trajectories(
            t_s,
            ep.q[1:n],
            chunk,
            info.joint_names,
            out_dir / f'trajectory_{ep.source.stem}.png',
            title=f'{ep.source.name}: recorded vs receding-horizon prediction (A={a})',
        )
    tmp = out_dir / '.metrics.json.tmp'
    tmp.write_text(json.dumps(metrics, indent=2))
    os.replace(tmp, out_dir / 'metrics.json')
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog='python -m kinova_policy_ros.training.evaluate', description=__doc__.split('\n\n')[0]
    )
    ap.add_argument('--checkpoint', type=Path, required=True)
    ap.add_argument('--data', type=Path, required=True)
    ap.add_argument('--out', type=Path, required=True)
    ap.add_argument(
        '--episodes',
        choices=('auto', 'val', 'all'),
        default='auto',
        help="'val': the checkpoint's held-out episodes; 'auto': val when present, else all",
    )
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--batch-size', type=int, default=64)
    ap.add_argument('--max-plots', type=int, default=4)
    ap.add_argument('--cache-dir', type=Path, default=None)
    args = ap.parse_args(argv)
    try:
        m = evaluate(
            args.checkpoint,
            args.data,
            args.out,
            episodes=args.episodes,
            device=args.device,
            batch_size=args.batch_size,
            max_plots=args.max_plots,
            cache_dir=args.cache_dir,
        )
    except KinovaPolicyError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    deg = np.degrees(m['mae_rad_per_step'])
    print(
        f'[evaluate] {m["num_samples"]} samples ({m["split"]}): MAE {np.degrees(m["mae_rad"]):.2f}'
        f' deg; step 1 {deg[0]:.2f} deg, step {len(deg)} {deg[-1]:.2f} deg -> {args.out}'
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
