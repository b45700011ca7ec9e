"""One optimizer step: augmentation, batch layout, loss, update (weights, EMA, schedule)."""

import dataclasses

from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from kinova_policy_ros.core.config import AugmentConfig, ModelConfig, TrainConfig
from kinova_policy_ros.core.errors import ConfigError, KinovaPolicyError
from kinova_policy_ros.policy.model import TransformerJointGripperNoDQ
from kinova_policy_ros.training.step import (
    apply_update,
    augment_images,
    augment_joints,
    make_optimizer,
    prepare_batch,
    step_loss,
)
import pytest
import torch

CPU = torch.device('cpu')
SMALL = ModelConfig(
    d_model=32, nhead=4, dim_feedforward=64, img_feat_dim=16, q_feat_dim=8, conv_channels=(8, 16)
)


def images(b: int = 3, n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(b, n, 3, 12, 16, generator=g), torch.rand(b, n, 1, 12, 16, generator=g)


def batch(b: int = 4, k: int = 8, t: int = 12) -> dict[str, torch.Tensor]:
    rgb, depth = images(b, k)
    g = torch.Generator().manual_seed(1)
    return {
        'rgb': rgb,
        'depth': depth,
        'q': torch.rand(b, k, 7, generator=g) * 2 - 1,
        'gt_joint': torch.rand(b, t, 7, generator=g) * 2 - 1,
        'goal': torch.rand(b, 3, generator=g),
    }


def test_image_shift_moves_every_frame_of_a_row_alike():
    rgb, depth = images()
    rgb0, depth0 = rgb.clone(), depth.clone()
    cfg = AugmentConfig(image_shift_px=2, color_jitter=0.0)
    augment_images(rgb, depth, cfg, torch.Generator().manual_seed(7))
    assert not torch.equal(rgb, rgb0)
    for i in range(rgb.shape[0]):  # find the row's shift on frame 0; it fits every frame
        pad = torch.nn.functional.pad(rgb0[i], (2, 2, 2, 2), mode='replicate')
        dpad = torch.nn.functional.pad(depth0[i], (2, 2, 2, 2), mode='replicate')
        fits = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(pad[:, :, dy:dy + 12, dx:dx + 16], rgb[i])
            and torch.equal(dpad[:, :, dy:dy + 12, dx:dx + 16], depth[i])
        ]
        assert fits, f'row {i}: no single shift explains all its frames'


def test_augmentation_is_a_function_of_the_generator():
    cfg = AugmentConfig(image_shift_px=1, color_jitter=0.2, q_noise_std=0.1, q_history_dropout=0.5)
    outs = []
    for seed in (5, 5, 6):
        rgb, depth = images()
        q = torch.rand(3, 4, 7, generator=torch.Generator().manual_seed(2))
        g = torch.Generator().manual_seed(seed)
        augment_images(rgb, depth, cfg, g)
        augment_joints(q, cfg, g)
        outs.append((rgb, depth, q))
    assert all(torch.equal(a, b) for a, b in zip(outs[0], outs[1]))
    assert not torch.equal(outs[0][2], outs[2][2])
    assert float(outs[0][0].min()) >= 0.0 and float(outs[0][0].max()) <= 1.0  # jitter clamps


def test_zero_augmentation_changes_nothing():
    rgb, depth = images()
    q = torch.rand(3, 4, 7)
    ref = (rgb.clone(), depth.clone(), q.clone())
    cfg = AugmentConfig(image_shift_px=0, color_jitter=0.0, q_noise_std=0.0, q_history_dropout=0.0)
    g = torch.Generator().manual_seed(0)
    augment_images(rgb, depth, cfg, g)
    augment_joints(q, cfg, g)
    assert torch.equal(rgb, ref[0]) and torch.equal(depth, ref[1]) and torch.equal(q, ref[2])


def test_history_dropout_repeats_the_current_frame():
    q = torch.rand(50, 4, 7, generator=torch.Generator().manual_seed(3))
    q0 = q.clone()
    augment_joints(q, AugmentConfig(q_history_dropout=0.5), torch.Generator().manual_seed(0))
    dropped = [i for i in range(50) if not torch.equal(q[i], q0[i])]
    assert 5 < len(dropped) < 45
    for i in dropped:
        assert torch.equal(q[i], q0[i, -1:].expand(4, 7))


def test_prepare_batch_flattens_segments_and_augments_by_step():
    tc = TrainConfig(windows_per_segment=2, seed=1)
    tc = dataclasses.replace(tc, augment=AugmentConfig(q_noise_std=0.1))
    g = torch.Generator().manual_seed(0)
    raw = {
        'rgb': torch.rand(3, 5, 3, 12, 16, generator=g),  # G=3 segments of L=5 frames
        'depth': torch.rand(3, 5, 1, 12, 16, generator=g),
        'q': torch.rand(3, 2, 4, 7, generator=g),  # [G,S,K,7]
        'gt_joint': torch.rand(3, 2, 12, 7, generator=g),
        'window_index': (torch.arange(2)[:, None] + torch.arange(4)[None]).expand(3, 2, 4),
    }
    q_before = raw['q'].flatten(0, 1).clone()
    out, window_index = prepare_batch(dict(raw), tc, step=4, device=CPU)
    assert out['q'].shape == (6, 4, 7) and out['gt_joint'].shape == (6, 12, 7)
    assert out['rgb'].shape == (3, 5, 3, 12, 16)
    assert window_index is not None and window_index.tolist() == [[0, 1, 2, 3], [1, 2, 3, 4]]
    noise = out['q'] - q_before
    assert float(noise.abs().max()) > 0
    again, _ = prepare_batch({k: v.clone() for k, v in raw.items()}, tc, step=4, device=CPU)
    assert torch.allclose(again['q'] - raw['q'].flatten(0, 1), noise)  # seeded by the step
    other, _ = prepare_batch({k: v.clone() for k, v in raw.items()}, tc, step=5, device=CPU)
    assert not torch.allclose(other['q'] - raw['q'].flatten(0, 1), noise)
    plain, index = prepare_batch(batch(), TrainConfig(), step=0, device=CPU)
    assert index is None and plain['q'].shape == (4, 8, 7)


def test_loss_is_the_joint_mse_plus_the_weighted_goal_mse():
    torch.manual_seed(0)
    model = TransformerJointGripperNoDQ(dataclasses.replace(SMALL, goal_head=True)).eval()
    b = batch()
    amp = torch.autocast('cuda', enabled=False)
    with torch.no_grad():
        pred, goal = model(b['rgb'], b['depth'], b['q'], 12, return_goal=True)
        joints = torch.nn.functional.mse_loss(pred, b['gt_joint'])
        goal_mse = torch.nn.functional.mse_loss(goal, b['goal'])
        assert torch.allclose(step_loss(model, b, None, 12, 0.0, amp), joints)
        assert torch.allclose(step_loss(model, b, None, 12, 0.5, amp), joints + 0.5 * goal_mse)


def optimization(model: torch.nn.Module, **ema: object):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = get_scheduler('linear', opt, num_warmup_steps=0, num_training_steps=10)
    return opt, sched, EMAModel(model.parameters(), **ema)


def test_update_steps_weights_ema_and_schedule():
    torch.manual_seed(0)
    model = TransformerJointGripperNoDQ(SMALL)
    opt, sched, ema = optimization(model, decay=0.9, use_ema_warmup=False)
    before = [p.detach().clone() for p in model.parameters()]
    loss = step_loss(model, batch(), None, 12, 0.0, torch.autocast('cuda', enabled=False))
    apply_update(loss, 0, model, opt, sched, ema, grad_clip=1.0)
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert ema.optimization_step == 1
    assert sched.get_last_lr()[0] == pytest.approx(1e-2 * 0.9)  # linear: 9 of 10 steps left
    # diffusers' decay without warm-up: 0 at step 1 (a copy), (1 + 1) / (10 + 1) at step 2
    for shadow, p in zip(ema.shadow_params, model.parameters()):
        torch.testing.assert_close(shadow, p.detach(), atol=1e-7, rtol=0)
    step1 = [p.detach().clone() for p in model.parameters()]
    loss = step_loss(model, batch(), None, 12, 0.0, torch.autocast('cuda', enabled=False))
    apply_update(loss, 1, model, opt, sched, ema, grad_clip=1.0)
    d = 2 / 11
    for shadow, a, p in zip(ema.shadow_params, step1, model.parameters()):
        torch.testing.assert_close(shadow, d * a + (1 - d) * p.detach(), atol=1e-6, rtol=0)
    assert not all(
        torch.allclose(s, p, atol=1e-5) for s, p in zip(ema.shadow_params, model.parameters())
    )


def test_non_finite_loss_is_refused_before_the_update():
    model = torch.nn.Linear(2, 1)
    opt, sched, ema = optimization(model)
    before = [p.detach().clone() for p in model.parameters()]
    loss = model(torch.tensor([[float('nan'), 1.0]])).sum()
    with pytest.raises(KinovaPolicyError, match='non-finite training loss at step 7'):
        apply_update(loss, 7, model, opt, sched, ema, grad_clip=0.0)
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert ema.optimization_step == 0


def test_multi_tensor_optimizer_and_clipping_give_the_same_weights_bit_for_bit():
    tc = TrainConfig(lr=5e-3, weight_decay=1e-2)
    runs = []
    for foreach in (False, True):
        torch.manual_seed(0)
        model = TransformerJointGripperNoDQ(SMALL).eval()  # no dropout: the same forward
        initial = [p.detach().clone() for p in model.parameters()]
        opt = make_optimizer(model.parameters(), tc, foreach=foreach)
        assert opt.defaults['foreach'] is foreach
        assert opt.defaults['lr'] == 5e-3 and opt.defaults['weight_decay'] == 1e-2
        sched = get_scheduler('constant', opt)
        ema = EMAModel(model.parameters(), decay=0.9)
        for step in range(3):
            loss = step_loss(model, batch(), None, 12, 0.0, torch.autocast('cuda', enabled=False))
            # a small clip threshold: clipping scales every step's gradients
            apply_update(loss, step, model, opt, sched, ema, grad_clip=1e-3, foreach=foreach)
        runs.append([p.detach().clone() for p in model.parameters()] + ema.shadow_params)
    assert all(torch.equal(a, b) for a, b in zip(*runs))
    assert any(not torch.equal(a, b) for a, b in zip(initial, runs[1]))  # it trained


def test_depth_noise_and_dropout_touch_depth_only():
    rgb, depth = images()
    rgb0, depth0 = rgb.clone(), depth.clone()
    cfg = AugmentConfig(depth_noise_std=0.05, depth_dropout=0.25)
    assert cfg.enabled
    augment_images(rgb, depth, cfg, torch.Generator().manual_seed(3))
    assert torch.equal(rgb, rgb0)  # colour untouched
    holes = depth == 0
    assert 0.15 < holes.float().mean().item() < 0.35  # ~25 % of the pixels read "no return"
    moved = (depth - depth0)[~holes]
    assert 0.03 < moved.std().item() < 0.07  # the noise's 0.05, give or take the clamp at 0
    assert bool((depth >= 0).all())
    again_rgb, again_depth = images()
    augment_images(again_rgb, again_depth, cfg, torch.Generator().manual_seed(3))
    assert torch.equal(again_depth, depth)  # the step's generator decides: reproducible


def test_horizon_decay_weights_the_first_steps():
    torch.manual_seed(0)
    model = TransformerJointGripperNoDQ(SMALL).eval()
    b = batch()
    amp = torch.autocast('cuda', enabled=False)
    with torch.no_grad():
        pred = model(b['rgb'], b['depth'], b['q'], 12)
        per_step = (pred - b['gt_joint']).square().mean(dim=(0, 2))  # [12]
        w = 0.8 ** torch.arange(12.0)
        expected = (per_step * w / w.mean()).mean()
        assert torch.allclose(step_loss(model, b, None, 12, 0.0, amp, 0.8), expected)
        plain = step_loss(model, b, None, 12, 0.0, amp, 1.0)
        assert torch.allclose(plain, per_step.mean())
        # the first step's error counts more than the last's
        b['gt_joint'][:, 0] += 0.5
        early = step_loss(model, b, None, 12, 0.0, amp, 0.8) - expected
        b['gt_joint'][:, 0] -= 0.5
        b['gt_joint'][:, -1] += 0.5
        late = step_loss(model, b, None, 12, 0.0, amp, 0.8) - expected
    assert early > 3 * late > 0


def test_new_recipe_options_are_validated():
    with pytest.raises(ConfigError, match=r'train\.augment\.depth_dropout'):
        AugmentConfig(depth_dropout=1.0)
    with pytest.raises(ConfigError, match=r'train\.augment\.depth_noise_std'):
        AugmentConfig(depth_noise_std=-0.1)
    with pytest.raises(ConfigError, match=r'train\.horizon_decay'):
        TrainConfig(horizon_decay=0.0)
    with pytest.raises(ConfigError, match=r'train\.horizon_decay'):
        TrainConfig(horizon_decay=1.5)
