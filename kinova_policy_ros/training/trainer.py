"""
The one training loop: :class:`Trainer` builds everything from an experiment config and runs.

Design for exact resume: the batch of step ``s`` is drawn from a generator seeded with
``(seed, s)`` (split across ranks, see :mod:`.sampling`), augmentation noise from one seeded
with ``(seed, s)`` too (see :mod:`.step`), and the global torch RNG (dropout) is saved with the
checkpoint (see :mod:`.state`). So a run killed at any moment and resumed from its last
checkpoint ends with bit-identical weights, and no sampler state or skipped batches are needed.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from kinova_policy_ros.core.allocator import keep_freed_memory
from kinova_policy_ros.core.config import ExperimentConfig, to_dict
from kinova_policy_ros.core.errors import KinovaPolicyError
from kinova_policy_ros.core.progress import Progress, progress
from kinova_policy_ros.data.dataset import KinovaJointDataset, list_episode_files
from kinova_policy_ros.policy.checkpoint import (
    CheckpointInfo,
    link_checkpoint,
    read_checkpoint_info,
    save_checkpoint,
)
from kinova_policy_ros.policy.model import TransformerJointGripperNoDQ
from kinova_policy_ros.training.distributed import (
    barrier,
    device_kind,
    init_distributed,
    training_device,
)
from kinova_policy_ros.training.metrics import MetricRow, MetricsLog, Throughput, validate
from kinova_policy_ros.training.sampling import split_episodes, training_loader
from kinova_policy_ros.training.state import (
    check_resumable,
    collect_training_state,
    restore_training_state,
    resume_checkpoint_path,
)
from kinova_policy_ros.training.step import (
    apply_update,
    make_optimizer,
    prepare_batch,
    step_loss,
)
import torch
from torch.optim.lr_scheduler import LambdaLR
import yaml


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
        speedups: bool = True,
    ) -> None:
        # speedups=False: the per-tensor optimizer and clipping loops and the per-window
        # validation of before (bench/bench_train_profile.py --baseline); the same training.
        self.cfg, self.out, self.progress, self.speedups = cfg, Path(out), progress, speedups
        tc = cfg.train
        self.d = init_distributed(device_kind(tc.device))
        if (tc.batch_size // tc.windows_per_segment) % self.d.world:
            raise KinovaPolicyError(
                f'train.batch_size / train.windows_per_segment '
                f'({tc.batch_size // tc.windows_per_segment}) must be divisible by the number '
                f'of processes ({self.d.world})'
            )
        if tc.keep_freed_memory:
            keep_freed_memory()
        self.device = training_device(tc.device, self.d)
        if self.device.type == 'cuda':
            torch.cuda.set_device(self.device)
        torch.manual_seed(tc.seed)
        self._build_datasets(data, cache_dir)
        self.model = TransformerJointGripperNoDQ(cfg.model, cfg.data.obs_horizon).to(self.device)
        self.eval_model = TransformerJointGripperNoDQ(cfg.model, cfg.data.obs_horizon).to(
            self.device
        )
        q_norm = self.stats.q
        for model in (self.model, self.eval_model):
            model.set_joint_normalization(
                q_norm.center, q_norm.scale, self.train_ds.joint_names
            )
        self.optimizer = make_optimizer(self.model.parameters(), tc, foreach=speedups)
        self.scheduler: LambdaLR = get_scheduler(
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

    def _build_datasets(
        self, data: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None
    ) -> None:
        """Split the episodes by episode; build the training and validation datasets."""
        cfg, tc = self.cfg, self.cfg.train
        files = list_episode_files(data)
        self.train_files, self.val_files = split_episodes(files, cfg.data.val_fraction, tc.seed)
        if tc.aux_goal_weight > 0 and not cfg.model.goal_head:
            raise KinovaPolicyError(
                f'train.aux_goal_weight is {tc.aux_goal_weight}: it needs model.goal_head=true'
            )
        self.train_ds = KinovaJointDataset.from_config(
            self.train_files,
            cfg.data,
            cache_dir=cache_dir,
            with_goal=tc.aux_goal_weight > 0,
            goal_offset=cfg.model.tcp_offset,
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

    # -- checkpoints ----------------------------------------------------------------------

    def info(self) -> CheckpointInfo:
        """Return what ``config.json`` of a checkpoint of this run says."""
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
            geometry=self.train_ds.stream_geometry(),
        )

    def save(self) -> Path:
        """Write ``checkpoints/step_<step>`` (EMA weights + training state); link ``last``."""
        ckpt_root = self.out / 'checkpoints'
        self.ema.copy_to(self.eval_model.parameters())
        tensors, state = collect_training_state(
            self.model,
            self.optimizer,
            self.scheduler,
            self.ema,
            self.step,
            self.best_val,
            self.d.world,
            self.cfg,
        )
        path = save_checkpoint(
            ckpt_root / f'step_{self.step:06d}', self.eval_model, self.info(), tensors, state
        )
        link_checkpoint(path, ckpt_root / 'last')
        return path

    def load_training_state(self, path: Path) -> None:
        """Resume from a checkpoint, a run folder or its ``checkpoints`` folder (its ``last``)."""
        path = resume_checkpoint_path(path)
        check_resumable(path, read_checkpoint_info(path), self.cfg)
        self.step, self.best_val = restore_training_state(
            path, self.model, self.optimizer, self.scheduler, self.ema, self.device
        )
        self.last_val = self.best_val

    # -- loop -----------------------------------------------------------------------------

    def run(self) -> Path | None:
        """Train to ``train.num_steps``; return the last checkpoint (rank 0)."""
        tc = self.cfg.train
        self.out.mkdir(parents=True, exist_ok=True)
        log = None
        if self.d.main:
            log = MetricsLog(self.out, self.step)
            (self.out / 'config.resolved.yaml').write_text(yaml.safe_dump(to_dict(self.cfg)))
        cuda = self.device.type == 'cuda'
        loader = training_loader(self.train_ds, tc, self.step, self.d, pin=cuda)
        amp = torch.autocast('cuda', dtype=torch.bfloat16, enabled=cuda)
        bar = progress(
            tc.num_steps,
            'train',
            initial=self.step,
            unit='step',
            disable=not (self.progress and self.d.main),
            dynamic_ncols=True,
        )
        meter = Throughput()
        last_path: Path | None = None
        try:
            for raw in loader:
                self.ddp.train()
                batch, window_index = prepare_batch(raw, tc, self.step, self.device)
                loss = step_loss(
                    self.ddp,
                    batch,
                    window_index,
                    self.cfg.data.pred_horizon,
                    tc.aux_goal_weight,
                    amp,
                    tc.horizon_decay,
                )
                apply_update(
                    loss,
                    self.step,
                    self.model,
                    self.optimizer,
                    self.scheduler,
                    self.ema,
                    tc.grad_clip,
                    foreach=self.speedups,
                )
                self.step += 1
                meter.add(batch['gt_joint'].shape[0] * self.d.world)
                bar.update(1)
                row = self._validate(self._log_row(loss, meter, bar))
                if log is not None and row:
                    log.write(row)
                last_path = self._checkpoint(row) or last_path
                if self.step % tc.checkpoint_every == 0:
                    barrier(self.d)
        finally:
            bar.close()
            if log is not None:
                log.close()
        if self.d.main and self.val_ds is None:
            link_checkpoint(self.out / 'checkpoints' / 'last', self.out / 'checkpoints' / 'best')
        return last_path

    def _log_row(self, loss: torch.Tensor, meter: Throughput, bar: Progress) -> MetricRow:
        """Return the metrics row of a logged step (``train.log_every``, the last), else {}."""
        tc = self.cfg.train
        if not (self.step % tc.log_every == 0 or self.step == tc.num_steps):
            return {}
        samples_per_s, elapsed_s = meter.take()
        row: MetricRow = {
            'step': self.step,
            'lr': float(self.scheduler.get_last_lr()[0]),
            'train_loss': loss.item(),
            'ema_decay': getattr(self.ema, 'cur_decay_value', None),
            'samples_per_s': samples_per_s,
            'elapsed_s': elapsed_s,
        }
        shown = {'loss': f'{row["train_loss"]:.4f}'}
        if math.isfinite(self.last_val):  # no 'val=inf' before the first validation
            shown['val'] = f'{self.last_val:.4f}'
        bar.set_postfix(shown)
        return row

    def _validate(self, row: MetricRow) -> MetricRow:
        """At a validation step, add the EMA weights' validation loss to ``row`` (rank 0)."""
        tc = self.cfg.train
        if self.val_ds is None or not (self.step % tc.val_every == 0 or self.step == tc.num_steps):
            return row
        if self.d.main:
            self.ema.copy_to(self.eval_model.parameters())
            self.last_val = validate(
                self.eval_model,
                self.val_ds,
                self.device,
                self.cfg.data.pred_horizon,
                shared_frames=self.speedups,
            )
            row['step'] = self.step
            row['val_loss'] = self.last_val
        barrier(self.d)
        return row

    def _checkpoint(self, row: MetricRow) -> Path | None:
        """Save at a new best, every ``train.checkpoint_every`` steps and at the end (rank 0)."""
        tc = self.cfg.train
        improved = self.val_ds is not None and self.last_val < self.best_val and 'val_loss' in row
        due = improved or self.step % tc.checkpoint_every == 0 or self.step == tc.num_steps
        if not (self.d.main and due):
            return None
        if improved:
            self.best_val = self.last_val
        path = self.save()
        if improved:
            link_checkpoint(path, self.out / 'checkpoints' / 'best')
        return path
