"""
What a run reports: ``metrics.csv`` (and TensorBoard when installed), throughput, validation.

``metrics.csv`` has one row per logged or validated step with the fields of
:data:`METRIC_FIELDS`; a resumed run keeps the rows up to the step it resumed from, so the file
of a run killed and resumed has each step once. Closing the log draws ``loss_curve.png``.
"""

from __future__ import annotations

import contextlib
import csv
from pathlib import Path
import time
from typing import Protocol, TypedDict

from kinova_policy_ros.data.dataset import KinovaJointDataset
from kinova_policy_ros.policy.model import TransformerJointGripperNoDQ
from kinova_policy_ros.training.plots import plot_loss_curve
import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

METRIC_FIELDS = ('step', 'lr', 'train_loss', 'val_loss', 'ema_decay', 'samples_per_s', 'elapsed_s')


class MetricRow(TypedDict, total=False):
    """One row of ``metrics.csv`` (a field left out is written empty)."""

    step: int
    lr: float
    train_loss: float
    val_loss: float
    ema_decay: float | None
    samples_per_s: float
    elapsed_s: float


class ScalarWriter(Protocol):
    """What the log uses of TensorBoard's ``SummaryWriter``."""

    def add_scalar(self, tag: str, scalar_value: float, global_step: int) -> object: ...

    def close(self) -> None: ...


class MetricsLog:
    """``metrics.csv`` (kept up to ``resumed_step``), TensorBoard scalars, the loss curve."""

    def __init__(self, out: Path, resumed_step: int, tensorboard: bool = True) -> None:
        self.out = out
        self.path = out / 'metrics.csv'
        rows: list[dict[str, str]] = []
        if self.path.exists():  # resumed: keep rows up to the resumed step
            with open(self.path) as f:
                rows = [r for r in csv.DictReader(f) if int(r['step']) <= resumed_step]
        self._file = open(self.path, 'w', newline='')  # closed by close()
        self._writer = csv.DictWriter(self._file, fieldnames=METRIC_FIELDS)
        self._writer.writeheader()
        self._writer.writerows(rows)
        self._file.flush()  # a run killed before its first row keeps the resumed rows
        self._tb: ScalarWriter | None = None
        if tensorboard:
            with contextlib.suppress(ImportError):
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(out / 'tensorboard'))

    def write(self, row: MetricRow) -> None:
        """Append ``row`` (flushed: a killed run keeps it) and its scalars to TensorBoard."""
        self._writer.writerow(row)
        self._file.flush()
        if self._tb is not None:
            for k, v in row.items():
                if k != 'step' and isinstance(v, int | float):  # not None
                    self._tb.add_scalar(k, v, row['step'])

    def close(self) -> None:
        """Close the CSV file, draw ``loss_curve.png`` from it, close TensorBoard."""
        if self._file.closed:
            return
        self._file.close()
        plot_loss_curve(self.path, self.out / 'loss_curve.png')
        if self._tb is not None:
            self._tb.close()


class Throughput:
    """Samples per second since the last report, and seconds since the start."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self._t = self.t0
        self._n = 0

    def add(self, samples: int) -> None:
        """Count ``samples`` more trained samples (all processes together)."""
        self._n += samples

    def take(self) -> tuple[float, float]:
        """Return (samples/s since the last take, seconds since the start) and restart."""
        now = time.perf_counter()
        rate = self._n / max(now - self._t, 1e-9)
        self._t, self._n = now, 0
        return rate, now - self.t0


def episode_segments(lengths: npt.NDArray[np.int64], size: int) -> list[tuple[int, int]]:
    """Cut every episode into segments ``(first sample index, S <= size)``; each sample once."""
    out, start = [], 0
    for n in lengths.tolist():
        out += [(start + t, min(size, n - t)) for t in range(0, n, size)]
        start += n
    return out


@torch.inference_mode()
def validate(
    model: TransformerJointGripperNoDQ,
    ds: KinovaJointDataset,
    device: torch.device,
    pred_horizon: int,
    max_samples: int = 2048,
    batch_size: int = 64,
    shared_frames: bool = True,
) -> float:
    """
    Mean MSE over (at most ``max_samples``, evenly strided) validation samples.

    When every sample is evaluated (``len(ds) <= max_samples``) and ``shared_frames``, the
    samples go in segments of up to ``batch_size`` consecutive windows of an episode, each frame
    encoded once (as segment batches in training): the same samples and loss up to float
    rounding, with about ``obs_horizon`` times fewer image encodings.
    """
    model.eval()
    total, count = 0.0, 0
    if shared_frames and len(ds) <= max_samples:
        for index, size in episode_segments(ds.lengths, batch_size):
            seg = ds.segment(index, size)
            pred = model(
                seg['rgb'][None].to(device),  # [1,L,3,H,W]
                seg['depth'][None].to(device),
                seg['q'].to(device),  # [S,K,7]
                pred_horizon,
                seg['window_index'].to(device),
            )
            gt = seg['gt_joint'].to(device)
            total += float(F.mse_loss(pred.float(), gt, reduction='sum'))
            count += gt.numel()
        return total / max(count, 1)
    idx = np.linspace(0, len(ds) - 1, min(len(ds), max_samples)).round().astype(int)
    for s in range(0, len(idx), batch_size):
        items = [ds[int(i)] for i in idx[s:s + batch_size]]
        batch = {k: torch.stack([it[k] for it in items]).to(device) for k in items[0]}
        pred = model(batch['rgb'], batch['depth'], batch['q'], pred_horizon)
        total += float(F.mse_loss(pred.float(), batch['gt_joint'], reduction='sum'))
        count += batch['gt_joint'].numel()
    return total / max(count, 1)
