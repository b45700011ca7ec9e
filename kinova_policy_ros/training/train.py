"""
The one training loop, behind a thin CLI.

``train_policy --config config/train.yaml --data DIR --out DIR [k=v ...]``
(or ``python -m kinova_policy_ros.training.train ...``)
(or under ``torchrun --nproc_per_node N`` for DistributedDataParallel).

Design for exact resume: the batch of step ``s`` is drawn from a generator seeded with
``(seed, s)`` (split across ranks), augmentation noise from one seeded with ``(seed, s)`` too,
and the global torch RNG (dropout) is saved with the checkpoint. So a run killed at any moment
and resumed from its last checkpoint ends with bit-identical weights, and no sampler state or
skipped batches are needed.
"""

import argparse
from collections.abc import Iterator, Sequence
import contextlib
import csv
import dataclasses
from dataclasses import dataclass
import json
import math
import os
from pathlib import Path
import sys
import time
import traceback
from typing import Any

from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from kinova_policy_ros.core.config import (
    AugmentConfig,
    ExperimentConfig,
    load_experiment_config,
    to_dict,
)
from kinova_policy_ros.core.errors import CheckpointError, KinovaPolicyError
from kinova_policy_ros.data.dataset import KinovaJointDataset, list_episode_files, SegmentDataset
from kinova_policy_ros.policy.checkpoint import (
    CheckpointInfo,
    link_checkpoint,
    read_checkpoint_info,
    save_checkpoint,
    STATE_JSON_FILE,
    STATE_TENSORS_FILE,
)
from kinova_policy_ros.policy.model import count_parameters, TransformerJointGripperNoDQ
from kinova_policy_ros.training.plots import plot_loss_curve
import numpy as np
from safetensors.torch import load_file
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm
import yaml

METRIC_FIELDS = ('step', 'lr', 'train_loss', 'val_loss', 'ema_decay', 'samples_per_s', 'elapsed_s')


@dataclass(frozen=True)
class Dist:
    """This process's place in a (possibly single-process) distributed run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_kind: str) -> Dist:
    """Join the process group when started by torchrun (``WORLD_SIZE`` > 1)."""
    world = int(os.environ.get('WORLD_SIZE', '1'))
    if world <= 1:
        return Dist()
    backend = 'nccl' if device_kind == 'cuda' else 'gloo'
    dist.init_process_group(backend=backend)
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get('LOCAL_RANK', '0')))


def device_kind(requested: str) -> str:
    """Return ``'cuda'`` or ``'cpu'`` for ``train.device`` (auto, cpu, cuda or cuda:N)."""
    cuda = requested.startswith('cuda') or (requested == 'auto' and torch.cuda.is_available())
    return 'cuda' if cuda else 'cpu'


def training_device(requested: str, d: Dist) -> torch.device:
    """
    Resolve ``train.device`` (auto, cpu, cuda or cuda:N) to the device this process trains on.

    A CUDA device always gets an index (``torch.cuda.set_device`` rejects a bare ``cuda``):
    the local rank under torchrun, the one named, else the current device.
    """
    if device_kind(requested) == 'cpu':
        return torch.device('cpu')
    if not torch.cuda.is_available():
        raise KinovaPolicyError(f'train.device is {requested!r} but CUDA is not available')
    if d.world > 1:
        return torch.device('cuda', d.local_rank)
    index = torch.device(requested if requested != 'auto' else 'cuda').index
    return torch.device('cuda', torch.cuda.current_device() if index is None else index)


def split_episodes(files: Sequence[Path], val_fraction: float, seed: int) -> tuple[list, list]:
    """Hold out whole episodes (never frames) for validation, deterministically."""
    files = sorted(files)
    n_val = round(val_fraction * len(files))
    if val_fraction > 0 and len(files) >= 2:
        n_val = max(1, min(n_val, len(files) - 1))
    else:
        n_val = 0
    order = np.random.default_rng(seed).permutation(len(files))
    val = sorted(files[i] for i in order[:n_val])
    train = sorted(files[i] for i in order[n_val:])
    return train, val


def sampling_cdf(ds: KinovaJointDataset, start_oversample: float) -> np.ndarray:
    """CDF over samples; episode starts (t < obs_horizon) weighted ``start_oversample``."""
    idx = np.arange(len(ds))
    w = np.where(ds.frame_of(idx) < ds.cfg.obs_horizon, start_oversample, 1.0)
    cdf = np.cumsum(w)
    return cdf / cdf[-1]


class StepBatchSampler(torch.utils.data.Sampler):
    """Yield, for steps ``start..num_steps-1``, this rank's share of the step's global batch."""

    def __init__(
        self, cdf: np.ndarray, batch: int, start: int, stop: int, seed: int, d: Dist
    ) -> None:
        self.cdf, self.batch, self.start, self.stop, self.seed, self.d = (
            cdf,
            batch,
            start,
            stop,
            seed,
            d,
        )

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        per_rank = self.batch // self.d.world
        for step in range(self.start, self.stop):
            u = np.random.default_rng([self.seed, step]).random(self.batch)
            idx = np.minimum(np.searchsorted(self.cdf, u, side='right'), len(self.cdf) - 1)
            yield idx[self.d.rank * per_rank:(self.d.rank + 1) * per_rank].tolist()


def augment_images(
    rgb: torch.Tensor, depth: torch.Tensor, cfg: AugmentConfig, g: torch.Generator
) -> None:
    """Shift and colour-jitter images [B,N,C,H,W] in place, the same for the N frames of a row."""
    b, n, _, h, w = rgb.shape
    if cfg.image_shift_px:
        p = cfg.image_shift_px
        shifts = torch.randint(0, 2 * p + 1, (b, 2), generator=g)
        rgb_p = F.pad(rgb.flatten(1, 2), (p, p, p, p), mode='replicate')  # [B,N*3,H+2p,W+2p]
        dep_p = F.pad(depth.flatten(1, 2), (p, p, p, p), mode='replicate')  # [B,N,H+2p,W+2p]
        for i in range(b):
            dy, dx = int(shifts[i, 0]), int(shifts[i, 1])
            rgb[i] = rgb_p[i, :, dy:dy + h, dx:dx + w].view(n, 3, h, w)  # [N*3,h,w]->[N,3,h,w]
            depth[i] = dep_p[i, :, dy:dy + h, dx:dx + w].view(n, 1, h, w)
    if cfg.color_jitter:
        gain = 1 + (torch.rand(b, 1, 3, 1, 1, generator=g) * 2 - 1) * cfg.color_jitter
        rgb.mul_(gain.to(rgb.device)).clamp_(0.0, 1.0)


def augment_joints(q: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> None:
    """Drop the joint history and add noise to observation windows q [B,K,7] in place."""
    if cfg.q_history_dropout:
        drop = (torch.rand(q.shape[0], generator=g) < cfg.q_history_dropout).to(q.device)
        q[drop, :-1] = q[drop, -1:]  # history := the current frame
    if cfg.q_noise_std:
        q.add_(torch.randn(q.shape, generator=g).to(q.device) * cfg.q_noise_std)


def make_loader(
    ds: torch.utils.data.Dataset, sampler: StepBatchSampler, workers: int, pin: bool
) -> torch.utils.data.DataLoader:
    # A private generator: the loader must not draw from the global RNG (dropout), or a resumed
    # run would see a shifted random stream.
    return torch.utils.data.DataLoader(
        ds,
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=pin,
        generator=torch.Generator().manual_seed(sampler.seed),
    )


@torch.no_grad()
def validate(
    model: TransformerJointGripperNoDQ,
    ds: KinovaJointDataset,
    device: torch.device,
    pred_horizon: int,
    max_samples: int = 2048,
    batch_size: int = 64,
) -> float:
    """Mean MSE over (at most ``max_samples``, evenly strided) validation samples."""
    model.eval()
    idx = np.linspace(0, len(ds) - 1, min(len(ds), max_samples)).round().astype(int)
    total, count = 0.0, 0
    for s in range(0, len(idx), batch_size):
        items = [ds[int(i)] for i in idx[s:s + batch_size]]
        batch = {k: torch.stack([it[k] for it in items]).to(device) for k in items[0]}
        pred = model(batch['rgb'], batch['depth'], batch['q'], pred_horizon)
        total += float(F.mse_loss(pred.float(), batch['gt_joint'], reduction='sum'))
        count += batch['gt_joint'].numel()
    return total / max(count, 1)


class Trainer:
    """Builds everything from an :class:`ExperimentConfig` and runs the loop."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        data: str | os.PathLike[str],
        out: str | os.PathLike[str],
        resume: str | os.PathLike[str] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        progress: bool = True,
    ) -> None:
        self.cfg, self.out, self.progress = cfg, Path(out), progress
        tc = cfg.train
        self.d = init_distributed(device_kind(tc.device))
        if (tc.batch_size // tc.windows_per_segment) % self.d.world:
            raise KinovaPolicyError(
                f'train.batch_size / train.windows_per_segment '
                f'({tc.batch_size // tc.windows_per_segment}) must be divisible by the number '
                f'of processes ({self.d.world})'
            )
        self.device = training_device(tc.device, self.d)
        if self.device.type == 'cuda':
            torch.cuda.set_device(self.device)
        torch.manual_seed(tc.seed)
        files = list_episode_files(data)
        self.train_files, self.val_files = split_episodes(files, cfg.data.val_fraction, tc.seed)
        if tc.aux_goal_weight > 0 and not cfg.model.goal_head:
            raise KinovaPolicyError(
                f'train.aux_goal_weight is {tc.aux_goal_weight}: it needs model.goal_head=true'
            )
        self.train_ds = KinovaJointDataset.from_config(
            self.train_files, cfg.data, cache_dir=cache_dir, with_goal=tc.aux_goal_weight > 0
        )
        self.stats = self.train_ds.stats
        self.val_ds = (
            KinovaJointDataset.from_config(self.val_files, cfg.data, self.stats, cache_dir)
            if self.val_files
            else None
        )
        if self.val_ds is not None and self.val_ds.joint_names != self.train_ds.joint_names:
            raise KinovaPolicyError('validation episodes have other joint_names than training')
        self.dt = self.train_ds.frame_period_s()
        self.model = TransformerJointGripperNoDQ(cfg.model, cfg.data.obs_horizon).to(self.device)
        self.eval_model = TransformerJointGripperNoDQ(cfg.model, cfg.data.obs_horizon).to(
            self.device
        )
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay
        )
        self.scheduler = get_scheduler(
            tc.lr_scheduler,
            self.optimizer,
            step_rules=tc.lr_step_rules,
            num_warmup_steps=tc.lr_warmup_steps,
            num_training_steps=tc.num_steps,
            num_cycles=tc.lr_num_cycles,
            power=tc.lr_power,
        )
        # EMAConfig's fields are EMAModel's arguments, one to one.
        self.ema = EMAModel(self.model.parameters(), **dataclasses.asdict(tc.ema))
        self.step = 0
        self.best_val = math.inf
        self.last_val = math.inf
        if resume is not None:
            self.load_training_state(Path(resume))
        self.ddp: torch.nn.Module = self.model
        if self.d.world > 1:
            self.ddp = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == 'cuda' else None
            )

    # -- checkpoints ----------------------------------------------------------------------

    def info(self) -> CheckpointInfo:
        return CheckpointInfo(
            self.out,
            self.cfg.model,
            self.cfg.data,
            self.stats,
            self.train_ds.joint_names,
            self.dt,
            self.step,
            {
                'weights': 'ema',
                'val_loss': None if math.isinf(self.best_val) else self.last_val,
                'train_episodes': [p.name for p in self.train_files],
                'val_episodes': [p.name for p in self.val_files],
                'train_config': to_dict(self.cfg.train),
            },
        )

    def save(self) -> Path:
        ckpt_root = self.out / 'checkpoints'
        self.ema.copy_to(self.eval_model.parameters())
        tensors: dict[str, torch.Tensor] = {
            f'model.{k}': v for k, v in self.model.state_dict().items()
        }
        opt = self.optimizer.state_dict()
        for pid, st in opt['state'].items():
            for name, v in st.items():
                tensors[f'optim.{pid}.{name}'] = v
        for i, p in enumerate(self.ema.shadow_params):
            tensors[f'ema.{i}'] = p
        tensors['rng.torch'] = torch.get_rng_state()
        if torch.cuda.is_available():
            for i, s in enumerate(torch.cuda.get_rng_state_all()):
                tensors[f'rng.cuda.{i}'] = s
        ema_state = {k: v for k, v in self.ema.state_dict().items() if k != 'shadow_params'}
        state_json = {
            'step': self.step,
            'best_val': None if math.isinf(self.best_val) else self.best_val,
            'param_groups': opt['param_groups'],
            'optim_state_keys': {str(k): sorted(v) for k, v in opt['state'].items()},
            'scheduler': self.scheduler.state_dict(),
            'ema': ema_state,
            'world_size': self.d.world,
            'config': {'data': to_dict(self.cfg.data), 'model': to_dict(self.cfg.model)},
        }
        path = save_checkpoint(
            ckpt_root / f'step_{self.step:06d}', self.eval_model, self.info(), tensors, state_json
        )
        link_checkpoint(path, ckpt_root / 'last')
        return path

    def load_training_state(self, path: Path) -> None:
        if path.name == 'checkpoints' or (path / 'checkpoints').is_dir():
            path = (path / 'checkpoints' if path.name != 'checkpoints' else path) / 'last'
        info = read_checkpoint_info(path)
        for section, have, want in (
            ('model', to_dict(info.model), to_dict(self.cfg.model)),
            ('data', to_dict(info.data), to_dict(self.cfg.data)),
        ):
            for k in want:
                if have.get(k) != want[k]:
                    raise CheckpointError(
                        f'{path}: cannot resume: {section}.{k} is {have.get(k)!r} in the '
                        f'checkpoint, {want[k]!r} in this run'
                    )
        try:
            tensors = load_file(str(path / STATE_TENSORS_FILE))
            state = json.loads((path / STATE_JSON_FILE).read_text())
        except (OSError, ValueError) as err:
            raise CheckpointError(f'{path}: no resumable training state: {err}') from err
        self.model.load_state_dict(
            {k.removeprefix('model.'): v for k, v in tensors.items() if k.startswith('model.')}
        )
        opt_state = {
            int(pid): {name: tensors[f'optim.{pid}.{name}'] for name in names}
            for pid, names in state['optim_state_keys'].items()
        }
        self.optimizer.load_state_dict({'state': opt_state, 'param_groups': state['param_groups']})
        self.scheduler.load_state_dict(state['scheduler'])
        shadow = [tensors[f'ema.{i}'] for i in range(len(self.ema.shadow_params))]
        self.ema.load_state_dict({**state['ema'], 'shadow_params': shadow})
        self.ema.to(self.device)
        torch.set_rng_state(tensors['rng.torch'])
        cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith('rng.cuda.')]
        if cuda_states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda_states)
        self.step = int(state['step'])
        self.best_val = math.inf if state['best_val'] is None else float(state['best_val'])
        self.last_val = self.best_val

    # -- loop -----------------------------------------------------------------------------

    def _metrics_writer(self) -> tuple[Any, Any]:
        path = self.out / 'metrics.csv'
        rows = []
        if path.exists():  # resumed: keep rows up to the resumed step
            with open(path) as f:
                rows = [r for r in csv.DictReader(f) if int(r['step']) <= self.step]
        f = open(path, 'w', newline='')
        w = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
        w.writeheader()
        w.writerows(rows)
        return f, w

    def run(self) -> Path | None:
        """Train to ``train.num_steps``; return the last checkpoint (rank 0)."""
        tc = self.cfg.train
        self.out.mkdir(parents=True, exist_ok=True)
        writer = tb = None
        f_csv = None
        if self.d.main:
            f_csv, writer = self._metrics_writer()
            (self.out / 'config.resolved.yaml').write_text(yaml.safe_dump(to_dict(self.cfg)))
            with contextlib.suppress(ImportError):
                from torch.utils.tensorboard import SummaryWriter

                tb = SummaryWriter(str(self.out / 'tensorboard'))
        cdf = sampling_cdf(self.train_ds, tc.start_oversample)
        seg = tc.windows_per_segment
        sampler = StepBatchSampler(
            cdf, tc.batch_size // seg, self.step, tc.num_steps, tc.seed, self.d
        )
        source: torch.utils.data.Dataset = (
            SegmentDataset(self.train_ds, seg) if seg > 1 else self.train_ds
        )
        loader = make_loader(source, sampler, tc.num_workers, pin=self.device.type == 'cuda')
        amp = torch.autocast('cuda', dtype=torch.bfloat16, enabled=self.device.type == 'cuda')
        bar = tqdm(
            total=tc.num_steps,
            initial=self.step,
            desc='train',
            disable=not (self.progress and self.d.main),
            dynamic_ncols=True,
        )
        t0 = time.perf_counter()
        t_log, n_log = t0, 0
        last_path: Path | None = None
        try:
            for batch in loader:
                self.ddp.train()
                window_index = None
                if seg > 1:  # [G,S,...] -> [G*S,...]: one row per window
                    window_index = batch['window_index'][0]  # [S,K], the same for every G
                    for key in ('q', 'gt_joint', 'goal'):
                        if key in batch:
                            batch[key] = batch[key].flatten(0, 1)
                if self.cfg.train.augment.enabled:
                    g = torch.Generator().manual_seed(tc.seed * 1_000_003 + self.step)
                    augment_images(batch['rgb'], batch['depth'], tc.augment, g)
                    augment_joints(batch['q'], tc.augment, g)
                batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
                with amp:
                    pred, goal = self.ddp(
                        batch['rgb'],
                        batch['depth'],
                        batch['q'],
                        self.cfg.data.pred_horizon,
                        None if window_index is None else window_index.to(self.device),
                        return_goal=True,
                    )
                loss = F.mse_loss(pred.float(), batch['gt_joint'])
                if tc.aux_goal_weight > 0:
                    loss = loss + tc.aux_goal_weight * F.mse_loss(goal.float(), batch['goal'])
                if not torch.isfinite(loss):
                    raise KinovaPolicyError(f'non-finite training loss at step {self.step}')
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if tc.grad_clip:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
                self.optimizer.step()
                self.ema.step(self.model.parameters())
                self.scheduler.step()
                self.step += 1
                n_log += batch['gt_joint'].shape[0] * self.d.world
                bar.update(1)
                row: dict[str, Any] = {}
                if self.step % tc.log_every == 0 or self.step == tc.num_steps:
                    now = time.perf_counter()
                    row = {
                        'step': self.step,
                        'lr': self.scheduler.get_last_lr()[0],
                        'train_loss': loss.item(),
                        'ema_decay': getattr(self.ema, 'cur_decay_value', None),
                        'samples_per_s': n_log / max(now - t_log, 1e-9),
                        'elapsed_s': now - t0,
                    }
                    t_log, n_log = now, 0
                    bar.set_postfix(loss=f'{row["train_loss"]:.4f}', val=f'{self.last_val:.4f}')
                if self.val_ds is not None and (
                    self.step % tc.val_every == 0 or self.step == tc.num_steps
                ):
                    if self.d.main:
                        self.ema.copy_to(self.eval_model.parameters())
                        self.last_val = validate(
                            self.eval_model, self.val_ds, self.device, self.cfg.data.pred_horizon
                        )
                        row = {**row, 'step': self.step, 'val_loss': self.last_val}
                    if self.d.world > 1:
                        dist.barrier()
                if self.d.main and row:
                    assert writer is not None and f_csv is not None
                    writer.writerow(row)
                    f_csv.flush()
                    if tb is not None:
                        for k, v in row.items():
                            if k != 'step' and v is not None:
                                tb.add_scalar(k, v, self.step)
                improved = (
                    self.val_ds is not None
                    and self.last_val < self.best_val
                    and ('val_loss' in row)
                )
                if self.d.main and (
                    improved or self.step % tc.checkpoint_every == 0 or self.step == tc.num_steps
                ):
                    if improved:
                        self.best_val = self.last_val
                    last_path = self.save()
                    if improved:
                        link_checkpoint(last_path, self.out / 'checkpoints' / 'best')
                if self.d.world > 1 and self.step % tc.checkpoint_every == 0:
                    dist.barrier()
        finally:
            bar.close()
            if f_csv is not None:
                f_csv.close()
                plot_loss_curve(self.out / 'metrics.csv', self.out / 'loss_curve.png')
            if tb is not None:
                tb.close()
        if self.d.main and self.val_ds is None:
            link_checkpoint(self.out / 'checkpoints' / 'last', self.out / 'checkpoints' / 'best')
        return last_path


def build_arg_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog='python -m kinova_policy_ros.training.train',
        description='Train TransformerJointGripperNoDQ on npz episodes.',
    )
    ap.add_argument('--config', type=Path, default=None, help='YAML config (default: built-in)')
    ap.add_argument('--data', type=Path, required=True, help='folder of npz episodes')
    ap.add_argument('--out', type=Path, required=True, help='output folder')
    ap.add_argument('--resume', type=Path, default=None, help='checkpoint dir or run folder')
    ap.add_argument('--cache-dir', type=Path, default=None, help='preprocessed-episode cache')
    ap.add_argument('--no-progress', action='store_true', help='no progress bar')
    ap.add_argument('overrides', nargs='*', help='dotted.key=value (value parsed as YAML)')
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_arg_parser().parse_args(argv)
    code = 1
    try:
        cfg = load_experiment_config(args.config, args.overrides)
        trainer = Trainer(
            cfg, args.data, args.out, args.resume, args.cache_dir, not args.no_progress
        )
        if trainer.d.main:
            print(
                f'[train] {len(trainer.train_ds)} samples from {len(trainer.train_files)} '
                f'episodes, {len(trainer.val_files)} validation episodes, '
                f'{count_parameters(trainer.model):,} parameters, device {trainer.device}, '
                f'{trainer.d.world} process(es), dt {trainer.dt * 1000:.1f} ms',
                flush=True,
            )
        path = trainer.run()
        if trainer.d.main:
            print(f'[train] done: {path}', flush=True)
        code = 0
        return code
    except KinovaPolicyError as err:
        print(f'error: {err}', file=sys.stderr)
        code = 2
        return code
    except BaseException:
        if dist.is_available() and dist.is_initialized():
            traceback.print_exc()  # the worker exits below, before Python would print it
        raise
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
            _exit_torchrun_worker(code)


def _exit_torchrun_worker(code: int) -> None:
    """
    End a torchrun worker process now, skipping the interpreter's teardown.

    With gloo, the teardown can deadlock: the last reference to the DDP reducer is dropped while
    the interpreter holds the GIL, the process group's destructor joins its worker thread, and
    that thread is still releasing a finished collective whose thread-local state needs the GIL
    (seen about once in 15 runs of a 2-process job, right after the last step). Everything the
    run produced is on disk by now (checkpoints are written atomically); only the streams are
    flushed. Called only after the process group existed, i.e. in a process torchrun started.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == '__main__':
    sys.exit(main())
