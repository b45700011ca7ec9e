"""
One optimizer step: batch layout, augmentation, the loss, the update of the weights and EMA.

Augmentation noise of step ``s`` comes from a generator seeded with ``(seed, s)``, never from
the global torch RNG, which only dropout draws on (and which checkpoints save): a resumed run
repeats the uninterrupted run bit for bit.
"""

from collections.abc import Iterable

from diffusers.training_utils import EMAModel
from kinova_policy_ros.core.config import AugmentConfig, TrainConfig
from kinova_policy_ros.core.errors import KinovaPolicyError
import torch
import torch.nn.functional as F
from torch.optim.lr_scheduler import LRScheduler

Batch = dict[str, torch.Tensor]


def augment_images(
    rgb: torch.Tensor, depth: torch.Tensor, cfg: AugmentConfig, g: torch.Generator
) -> None:
    """
    Shift and colour-jitter images [B,N,C,H,W] in place, the same for the N frames of a row.

    Depth noise and dropout (holes read as 0, like a depth camera's missing returns) are drawn
    per pixel and frame.
    """
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
    if cfg.depth_noise_std:
        noise = torch.randn(depth.shape, generator=g) * cfg.depth_noise_std
        depth.add_(noise.to(depth.device)).clamp_(min=0.0)
    if cfg.depth_dropout:
        holes = torch.rand(depth.shape, generator=g) < cfg.depth_dropout
        depth.masked_fill_(holes.to(depth.device), 0.0)


def augment_joints(q: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> None:
    """Drop the joint history and add noise to observation windows q [B,K,7] in place."""
    if cfg.q_history_dropout:
        drop = (torch.rand(q.shape[0], generator=g) < cfg.q_history_dropout).to(q.device)
        q[drop, :-1] = q[drop, -1:]  # history := the current frame
    if cfg.q_noise_std:
        q.add_(torch.randn(q.shape, generator=g).to(q.device) * cfg.q_noise_std)


def prepare_batch(
    batch: Batch, tc: TrainConfig, step: int, device: torch.device
) -> tuple[Batch, torch.Tensor | None]:
    """
    Lay out, augment and move a loader batch; return it and the segment's window index.

    A segment batch (``train.windows_per_segment`` S > 1) holds G segments: its targets
    [G,S,...] become one row per window [G*S,...], and the window index [S,K] (the same for
    every segment) tells the model which of the segment's frames each window sees.
    """
    window_index = None
    if tc.windows_per_segment > 1:
        window_index = batch['window_index'][0]  # [S,K], the same for every G
        for key in ('q', 'gt_joint', 'goal'):
            if key in batch:
                batch[key] = batch[key].flatten(0, 1)
    if tc.augment.enabled:
        g = torch.Generator().manual_seed(tc.seed * 1_000_003 + step)
        augment_images(batch['rgb'], batch['depth'], tc.augment, g)
        augment_joints(batch['q'], tc.augment, g)
    moved = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    return moved, None if window_index is None else window_index.to(device)


def step_loss(
    net: torch.nn.Module,
    batch: Batch,
    window_index: torch.Tensor | None,
    pred_horizon: int,
    aux_goal_weight: float,
    amp: torch.autocast,
    horizon_decay: float = 1.0,
) -> torch.Tensor:
    """
    MSE of the predicted joints (plus the weighted goal loss) of ``net`` (model or DDP).

    ``horizon_decay`` < 1 weights horizon step t by ``horizon_decay**t`` (normalized to mean 1).
    """
    with amp:
        pred, goal = net(
            batch['rgb'],
            batch['depth'],
            batch['q'],
            pred_horizon,
            window_index,
            return_goal=True,
        )
    if horizon_decay == 1.0:
        loss = F.mse_loss(pred.float(), batch['gt_joint'])
    else:
        t = torch.arange(pred_horizon, dtype=torch.float32, device=pred.device)
        w = horizon_decay**t
        w = w / w.mean()  # [T], mean 1
        err = (pred.float() - batch['gt_joint']).square().mean(dim=(0, 2))  # [B,T,7] -> [T]
        loss = (err * w).mean()
    if aux_goal_weight > 0:
        loss = loss + aux_goal_weight * F.mse_loss(goal.float(), batch['goal'])
    return loss


def make_optimizer(
    params: Iterable[torch.nn.Parameter], tc: TrainConfig, foreach: bool = True
) -> torch.optim.AdamW:
    """
    Return the AdamW optimizer of ``params`` with ``tc``'s learning rate and weight decay.

    ``foreach``: the multi-tensor implementation, which torch picks by itself only on CUDA; on
    a CPU it is about 1.3x faster for the same weights bit for bit (False: the per-tensor loop).
    """
    return torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay, foreach=foreach)


def apply_update(
    loss: torch.Tensor,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler,
    ema: EMAModel,
    grad_clip: float,
    foreach: bool = True,
) -> None:
    """
    Back-propagate ``loss`` (refused when not finite), step the optimizer, EMA, schedule.

    ``foreach`` clips the gradients with the multi-tensor kernels (the same norm and weights,
    bit for bit, fewer dispatches; False: the per-tensor loop, as before).
    """
    if not torch.isfinite(loss):
        raise KinovaPolicyError(f'non-finite training loss at step {step}')
    optimizer.zero_grad(set_to_none=True)
    torch.autograd.backward(loss)  # what loss.backward() calls (typed)
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip, foreach=foreach)
    optimizer.step()
    ema.step(model.parameters())
    scheduler.step()
