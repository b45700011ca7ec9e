"""Synthetic episodes and checkpoints (kinova_policy_ros.testing.synthetic)."""

from pathlib import Path
import zipfile

from kinova_policy_ros.core import kinematics as kin
from kinova_policy_ros.core.config import DataConfig, ModelConfig
from kinova_policy_ros.core.errors import ConfigError
from kinova_policy_ros.data.schema import (
    check_episode,
    DEFAULT_JOINT_NAMES,
    load_episode,
    validate_episode,
)
from kinova_policy_ros.policy.checkpoint import load_checkpoint
from kinova_policy_ros.testing.synthetic import (
    HOME_Q,
    make_episode,
    make_random_checkpoint,
    write_episodes,
)
import numpy as np
import pytest
import torch

SMALL_MODEL = {'d_model': 32, 'dim_feedforward': 64, 'img_feat_dim': 16, 'q_feat_dim': 8}


def test_an_episode_is_valid_and_shaped_as_asked():
    ep = make_episode(3, num_frames=20, hw=(24, 32), dt=0.1)
    arrays = ep.to_arrays()
    assert validate_episode(arrays) == []
    check_episode(arrays)
    assert ep.num_frames == 20
    assert ep.rgb.shape == (20, 24, 32, 3) and ep.rgb.dtype == np.uint8
    assert ep.depth.shape == (20, 24, 32) and ep.depth.dtype == np.float32
    assert (ep.camera_width, ep.camera_height) == (32, 24)
    assert ep.joint_names == DEFAULT_JOINT_NAMES
    np.testing.assert_array_equal(np.diff(ep.stamp_ns), np.full(19, 100_000_000))
    assert np.all(ep.depth[:, 0, :] == 0.0) and np.all(ep.depth[:, 1:, :] > 0.5)


def test_the_same_seed_gives_the_same_episode_another_seed_another():
    a, b, c = make_episode(5, 10), make_episode(5, 10), make_episode(6, 10)
    for key, value in a.to_arrays().items():
        np.testing.assert_array_equal(value, b.to_arrays()[key], err_msg=key)
    assert not np.array_equal(a.q, c.q) and not np.array_equal(a.rgb, c.rgb)


def test_the_motion_starts_home_and_depends_on_the_disc():
    # the arm starts near home and converges to a goal set by where the disc is in the image
    goals = []
    for seed in range(4):
        ep = make_episode(seed, num_frames=150, hw=(48, 64))
        assert np.abs(ep.q[0] - HOME_Q).max() < 0.1
        steps = np.abs(np.diff(ep.q, axis=0)).max(axis=1)
        assert steps[-1] < steps[0] / 100  # converged (time constant 1 s, 10 s of frames)
        red = (ep.rgb[0, :, :, 0] == 220) & (ep.rgb[0, :, :, 1] == 40)
        assert red.sum() > 0  # the disc is drawn
        goals.append(ep.q[-1])
        np.testing.assert_allclose(ep.dq[:-1] * (1 / 15), np.diff(ep.q, axis=0), atol=2e-3)
    assert min(np.abs(a - b).max() for i, a in enumerate(goals) for b in goals[i + 1:]) > 0.01


def test_end_effector_is_the_forward_kinematics_of_q():
    ep = make_episode(1, num_frames=5)
    xyz, rpy = kin.fk(ep.q)
    np.testing.assert_allclose(ep.ee_xyz, xyz)
    np.testing.assert_allclose(ep.ee_rpy, rpy)


@pytest.mark.parametrize('compress', [True, False])
def test_write_episodes(tmp_path: Path, compress: bool):
    out = tmp_path / 'eps'
    paths = write_episodes(out, 3, seed=2, num_frames=6, hw=(16, 20), compress=compress)
    assert [p.name for p in paths] == ['episode_000.npz', 'episode_001.npz', 'episode_002.npz']
    loaded = [load_episode(p) for p in paths]
    assert [e.num_frames for e in loaded] == [6, 6, 6]
    np.testing.assert_array_equal(loaded[1].q, make_episode(2 * 100_003 + 1, 6, (16, 20)).q)
    assert not np.array_equal(loaded[0].q, loaded[1].q)
    with zipfile.ZipFile(paths[0]) as z:
        kinds = {i.compress_type for i in z.infolist()}
    assert kinds == ({zipfile.ZIP_DEFLATED} if compress else {zipfile.ZIP_STORED})
    again = write_episodes(out, 1, seed=2, num_frames=6, hw=(16, 20))  # overwrites
    assert again == paths[:1]


def test_a_random_checkpoint_loads_with_what_was_asked(tmp_path: Path):
    path = make_random_checkpoint(
        tmp_path / 'ckpt',
        image_hw=(24, 32),
        seed=1,
        dt=0.05,
        obs_horizon=3,
        pred_horizon=5,
        action_horizon=2,
        crop=(0.0, 0.1, 0.9, 0.8),
        anchor_frame=True,
        **SMALL_MODEL,
    )
    model, info = load_checkpoint(path)
    assert info.data == DataConfig(
        resize_hw=(24, 32),
        crop=(0.0, 0.1, 0.9, 0.8),
        anchor_frame=True,
        obs_horizon=3,
        pred_horizon=5,
        action_horizon=2,
    )
    assert info.model == ModelConfig(**SMALL_MODEL)
    assert info.dt == 0.05 and info.joint_names == DEFAULT_JOINT_NAMES
    assert info.extra == {'weights': 'random'}
    np.testing.assert_allclose(info.stats.q_min, HOME_Q - 0.5)
    np.testing.assert_allclose(info.stats.q_max, HOME_Q + 0.5)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_random_checkpoints_depend_on_the_seed(tmp_path: Path):
    def weights(seed: int, name: str) -> torch.Tensor:
        path = make_random_checkpoint(tmp_path / name, seed=seed, **SMALL_MODEL)
        model, _ = load_checkpoint(path)
        return torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    assert torch.equal(weights(0, 'a'), weights(0, 'b'))
    assert not torch.equal(weights(0, 'a'), weights(1, 'c'))


def test_a_bad_model_override_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match=r'model\.dropout: must be in \[0, 1\), got 2'):
        make_random_checkpoint(tmp_path / 'bad', dropout=2.0)
    with pytest.raises(TypeError, match='not_a_field'):
        make_random_checkpoint(tmp_path / 'bad2', not_a_field=1)
