"""
Synthetic episodes and checkpoints for tests, benchmarks and the quick demo.

The synthetic task is learnable from the images: a coloured disc is drawn at a random place on
a textured floor, and the arm's joints converge from the Gen3 home pose to a configuration that
depends on where the disc is (so the policy must look at the image to predict the motion).
"""

from collections.abc import Sequence
import os
from pathlib import Path

from kinova_policy_ros.core.config import DataConfig, ModelConfig
from kinova_policy_ros.data.preprocess import JointStats
from kinova_policy_ros.data.schema import DEFAULT_JOINT_NAMES, Episode, save_episode
from kinova_policy_ros.policy.checkpoint import CheckpointInfo, save_checkpoint
from kinova_policy_ros.policy.model import TransformerJointGripperNoDQ
import numpy as np
import torch

#: Gen3 "Home" pose of the ros2_kortex MoveIt configuration (docs/gen3.md).
HOME_Q = np.array([0.0, 0.26, np.pi, -2.27, 0.0, 0.96, np.pi / 2])
# How the target position (u, v in [-1, 1]) moves each joint's goal, rad.
_GOAL_GAIN = np.array(
    [[0.6, 0.0], [0.0, 0.35], [0.3, 0.0], [0.0, -0.4], [0.2, 0.1], [0.0, 0.3], [0.4, 0.0]]
)


def make_episode(
    seed: int,
    num_frames: int = 60,
    hw: tuple[int, int] = (48, 64),
    dt: float = 1.0 / 15.0,
) -> Episode:
    """One synthetic episode (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    h, w = hw
    uv = rng.uniform(-0.8, 0.8, size=2)  # target position in the image, [-1, 1]
    goal = HOME_Q + _GOAL_GAIN @ uv
    q0 = HOME_Q + rng.normal(0.0, 0.02, size=7)
    t = np.arange(num_frames) * dt
    alpha = np.exp(-t / 1.0)[:, None]  # [N,1] convergence, time constant 1 s
    q = goal + (q0 - goal) * alpha  # [N,7]
    dq = -(q0 - goal) * alpha / 1.0  # d/dt
    ys, xs = np.mgrid[0:h, 0:w]
    cx, cy = (uv[0] + 1) / 2 * (w - 1), (uv[1] + 1) / 2 * (h - 1)
    disc = ((xs - cx) ** 2 + (ys - cy) ** 2) <= (0.1 * min(h, w)) ** 2  # [h,w]
    floor = 90 + 20 * ((xs // 8 + ys // 8) % 2)  # checkerboard texture
    rgb = np.empty((num_frames, h, w, 3), np.uint8)
    depth = np.empty((num_frames, h, w), np.float32)
    for i in range(num_frames):
        noise = rng.integers(0, 6, size=(h, w))
        base = (floor + noise).astype(np.uint8)
        frame = np.stack([base, base, base], axis=-1)
        frame[disc] = (220, 40, 40)
        rgb[i] = frame
        d = 0.8 + 0.002 * ys.astype(np.float32)
        d[disc] -= 0.05
        d[0, :] = 0.0  # an invalid row, as real sensors have
        depth[i] = d
    from kinova_policy_ros.core.kinematics import fk  # local: the sim engineer owns kinematics

    ee_xyz, ee_rpy = fk(q)
    return Episode(
        stamp_ns=np.int64(1_700_000_000_000_000_000) + np.round(t * 1e9).astype(np.int64),
        rgb=rgb,
        depth=depth,
        q=q.astype(np.float64),
        dq=dq.astype(np.float64),
        ee_xyz=np.asarray(ee_xyz, np.float64),
        ee_rpy=np.asarray(ee_rpy, np.float64),
        joint_names=DEFAULT_JOINT_NAMES,
        camera_K=np.array([[w, 0, w / 2], [0, w, h / 2], [0, 0, 1]], np.float64),
        camera_D=np.zeros(5),
        camera_width=w,
        camera_height=h,
    )


def write_episodes(
    out_dir: str | os.PathLike[str],
    num_episodes: int,
    *,
    seed: int = 0,
    num_frames: int = 60,
    hw: tuple[int, int] = (48, 64),
    compress: bool = True,
) -> list[Path]:
    """Write ``num_episodes`` synthetic episodes ``episode_000.npz`` … into ``out_dir``."""
    out = Path(out_dir)
    paths = []
    for i in range(num_episodes):
        ep = make_episode(seed * 100_003 + i, num_frames=num_frames, hw=hw)
        paths.append(
            save_episode(out / f'episode_{i:03d}.npz', ep, compress=compress, overwrite=True)
        )
    return paths


def make_random_checkpoint(
    out_dir: str | os.PathLike[str],
    *,
    image_hw: tuple[int, int] = (24, 32),
    seed: int = 0,
    dt: float = 0.1,
    obs_horizon: int = 8,
    pred_horizon: int = 12,
    action_horizon: int = 6,
    joint_names: Sequence[str] = DEFAULT_JOINT_NAMES,
    q_range: tuple[np.ndarray, np.ndarray] | None = None,
    crop: tuple[float, float, float, float] | None = None,
    anchor_frame: bool = False,
    **model_overrides: object,
) -> Path:
    """
    Write a valid checkpoint with random weights (for node tests and latency benchmarks).

    ``model_overrides`` are :class:`ModelConfig` fields (e.g. ``d_model=32``); without them the
    model has the default size.
    """
    torch.manual_seed(seed)
    mcfg = ModelConfig(**model_overrides)  # type: ignore[arg-type]
    dcfg = DataConfig(
        resize_hw=image_hw,
        crop=crop,
        anchor_frame=anchor_frame,
        obs_horizon=obs_horizon,
        pred_horizon=pred_horizon,
        action_horizon=action_horizon,
    )
    model = TransformerJointGripperNoDQ(mcfg, obs_horizon=obs_horizon)
    lo, hi = q_range if q_range is not None else (HOME_Q - 0.5, HOME_Q + 0.5)
    stats = JointStats(np.asarray(lo), np.asarray(hi), -np.ones(7), np.ones(7))
    info = CheckpointInfo(
        Path(out_dir), mcfg, dcfg, stats, tuple(joint_names), float(dt), 0, {'weights': 'random'}
    )
    return save_checkpoint(out_dir, model, info)
