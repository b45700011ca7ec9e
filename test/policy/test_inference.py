"""PolicyRunner: online == offline (cache, crop, anchor frame), expected fields, refusals."""

import json
from pathlib import Path
import shutil

from helpers import episode_arrays
from kinova_policy_ros.core.errors import CheckpointError
from kinova_policy_ros.data.dataset import KinovaJointDataset
from kinova_policy_ros.data.schema import save_episode
from kinova_policy_ros.policy.checkpoint import load_checkpoint
from kinova_policy_ros.policy.inference import PolicyRunner
from kinova_policy_ros.testing.synthetic import make_random_checkpoint
import numpy as np
import pytest
import torch


@pytest.fixture(scope='module')
def setup(tmp_path_factory) -> tuple[Path, KinovaJointDataset, dict]:
    root = tmp_path_factory.mktemp('inference')
    arrays = episode_arrays(seed=3, num_frames=14, hw=(30, 40))
    save_episode(root / 'data' / 'ep.npz', arrays)
    ds = KinovaJointDataset(
        root / 'data', obs_horizon=8, pred_horizon=12, resize_hw=(24, 32), cache_dir=root / 'c'
    )
    ckpt = make_random_checkpoint(
        root / 'ckpt',
        image_hw=(24, 32),
        dt=ds.frame_period_s(),
        q_range=(ds.stats.q_min, ds.stats.q_max),
        d_model=32,
        dim_feedforward=64,
        img_feat_dim=16,
        q_feat_dim=8,
    )
    info = json.loads((ckpt / 'config.json').read_text())
    info['stats'] = ds.stats.to_dict()
    (ckpt / 'config.json').write_text(json.dumps(info))
    return ckpt, ds, arrays


def offline_prediction(model: torch.nn.Module, info, item: dict) -> np.ndarray:
    """Run the model on one dataset item, denormalized like ``PolicyRunner.predict``: [12, 7]."""
    with torch.no_grad():
        ref = model(item['rgb'][None], item['depth'][None], item['q'][None], 12)[0]
    return info.stats.q.denormalize(ref.numpy())


@pytest.mark.parametrize('use_cache', [True, False])
def test_predict_equals_model_on_dataset_item(setup, use_cache: bool):
    ckpt, ds, arrays = setup
    runner = PolicyRunner.from_checkpoint(ckpt, use_cache=use_cache)
    model, info = load_checkpoint(ckpt)
    for t in range(14):
        runner.push_observation(arrays['rgb'][t], arrays['depth'][t], arrays['q'][t])
        assert runner.num_observations == min(t + 1, 8)
        expected = offline_prediction(model, info, ds[t])
        got = runner.predict()
        assert got.shape == (12, 7) and got.dtype == np.float64
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=f't={t}')


def test_residual_checkpoint_runs_like_the_model(setup, tmp_path: Path):
    _, ds, arrays = setup
    ckpt = make_random_checkpoint(
        tmp_path / 'residual',
        image_hw=(24, 32),
        q_range=(ds.stats.q_min, ds.stats.q_max),
        d_model=32,
        dim_feedforward=64,
        residual=True,
    )
    runner = PolicyRunner.from_checkpoint(ckpt)
    model, info = load_checkpoint(ckpt)
    for t in range(10):
        runner.push_observation(arrays['rgb'][t], arrays['depth'][t], arrays['q'][t])
    np.testing.assert_allclose(runner.predict(), offline_prediction(model, info, ds[9]), atol=1e-5)


def test_cropped_checkpoint_sees_the_same_crop_as_its_dataset(setup, tmp_path: Path):
    # data.crop travels with the checkpoint: the runner crops camera frames exactly like the
    # dataset cache did for training
    _, ds0, arrays = setup
    crop = (0.2, 0.25, 0.6, 0.5)
    ds = KinovaJointDataset(
        ds0.files, resize_hw=(12, 16), crop=crop, stats=ds0.stats, cache_dir=tmp_path / 'c'
    )
    ckpt = make_random_checkpoint(
        tmp_path / 'crop', image_hw=(12, 16), crop=crop, q_range=(ds.stats.q_min, ds.stats.q_max),
        d_model=32, dim_feedforward=64,
    )
    runner = PolicyRunner.from_checkpoint(ckpt)
    assert runner.info.data.crop == crop
    model, info = load_checkpoint(ckpt)
    for t in range(9):
        runner.push_observation(arrays['rgb'][t], arrays['depth'][t], arrays['q'][t])
    item = ds[8]
    np.testing.assert_allclose(runner.predict(), offline_prediction(model, info, item), atol=1e-5)
    # and the crop matters: the uncropped frames give other model inputs
    full = KinovaJointDataset(
        ds0.files, resize_hw=(12, 16), stats=ds0.stats, cache_dir=tmp_path / 'c'
    )
    assert not torch.allclose(full[8]['rgb'], item['rgb'])


@pytest.mark.parametrize('use_cache', [True, False])
def test_anchor_frame_is_the_first_observation_since_the_reset(
    setup, tmp_path: Path, use_cache: bool
):
    # data.anchor_frame travels with the checkpoint: online windows are built like the
    # dataset's, the first observation since the reset heading every window
    _, ds0, arrays = setup
    ds = KinovaJointDataset(
        ds0.files, resize_hw=(24, 32), anchor_frame=True, stats=ds0.stats, cache_dir=tmp_path / 'c'
    )
    ckpt = make_random_checkpoint(
        tmp_path / 'anchor', image_hw=(24, 32), anchor_frame=True,
        q_range=(ds.stats.q_min, ds.stats.q_max), d_model=32, dim_feedforward=64,
    )
    runner = PolicyRunner.from_checkpoint(ckpt, use_cache=use_cache)
    assert runner.anchor_frame
    model, info = load_checkpoint(ckpt)
    for t in range(14):
        runner.push_observation(arrays['rgb'][t], arrays['depth'][t], arrays['q'][t])
        expected = offline_prediction(model, info, ds[t])
        np.testing.assert_allclose(runner.predict(), expected, atol=1e-5, err_msg=f't={t}')
    # after a reset the anchor is the new first observation (frame 5 here), not frame 0
    runner.reset()
    for t in range(5, 13):
        runner.push_observation(arrays['rgb'][t], arrays['depth'][t], arrays['q'][t])
    item = ds[12]  # frames 0, 5..12
    for key in ('rgb', 'depth', 'q'):
        item[key][0] = item[key][1]  # frame 5 instead of frame 0 heads the window
    np.testing.assert_allclose(runner.predict(), offline_prediction(model, info, item), atol=1e-5)
    assert not np.allclose(runner.predict(), offline_prediction(model, info, ds[12]), atol=1e-5)


def test_cached_and_full_window_agree_and_reset(setup):
    ckpt, _, arrays = setup
    a = PolicyRunner.from_checkpoint(ckpt, use_cache=True)
    b = PolicyRunner.from_checkpoint(ckpt, use_cache=False)
    for t in range(10):
        for r in (a, b):
            r.push_observation(arrays['rgb'][t], arrays['depth'][t], arrays['q'][t])
    np.testing.assert_allclose(a.predict(), b.predict(), atol=1e-5)
    a.reset()
    assert a.num_observations == 0
    with pytest.raises(RuntimeError, match='before any push_observation'):
        a.predict()


def test_runner_exposes_what_the_node_needs(setup):
    ckpt, ds, _ = setup
    r = PolicyRunner.from_checkpoint(ckpt)
    assert r.joint_names == ds.joint_names
    assert r.dt == pytest.approx(1 / 15, rel=1e-6)
    assert (r.obs_horizon, r.pred_horizon, r.action_horizon) == (8, 12, 6)
    assert r.image_hw == (24, 32)
    np.testing.assert_allclose(r.q_min, ds.stats.q_min)
    rgb, depth = np.zeros((5, 5, 3), np.uint8), np.zeros((5, 5), np.float32)
    with pytest.raises(ValueError, match='q: non-finite'):
        r.push_observation(rgb, depth, np.full(7, np.nan))
    with pytest.raises(ValueError, match='q: expected 7 joint positions'):
        r.push_observation(rgb, depth, np.zeros(6))


def test_expected_fields_are_checked(setup):
    ckpt, ds, _ = setup
    PolicyRunner.from_checkpoint(ckpt, expected={'joint_names': ds.joint_names})
    with pytest.raises(CheckpointError, match=r"field 'data.obs_horizon' is 8, expected 4"):
        PolicyRunner.from_checkpoint(ckpt, expected={'data.obs_horizon': 4})
    with pytest.raises(CheckpointError, match=r"no field 'data\.nope'"):
        PolicyRunner.from_checkpoint(ckpt, expected={'data.nope': 1})


def test_runner_refuses_an_invalid_checkpoint_naming_the_field(setup, tmp_path: Path):
    # every refusal of the format: test_checkpoint.py; the runner passes them on
    broken = tmp_path / 'broken'
    shutil.copytree(setup[0], broken)
    cfg = json.loads((broken / 'config.json').read_text())
    cfg['stats'].pop('q_max')
    (broken / 'config.json').write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="missing normalization stat 'q_max'"):
        PolicyRunner.from_checkpoint(broken)
    with pytest.raises(CheckpointError, match='checkpoint directory does not exist'):
        PolicyRunner.from_checkpoint(tmp_path / 'nope')


@pytest.mark.parametrize('action_space', ['joint', 'task'])
def test_torchscript_runner_equals_the_model(setup, tmp_path: Path, action_space: str):
    _, ds, arrays = setup
    ckpt = make_random_checkpoint(
        tmp_path / action_space,
        image_hw=(24, 32),
        q_range=(ds.stats.q_min, ds.stats.q_max),
        d_model=32,
        dim_feedforward=64,
        action_space=action_space,
    )
    runner = PolicyRunner.from_checkpoint(ckpt, jit=True)
    assert runner.jit and runner.jit_note == ''
    assert isinstance(runner._decode, torch.jit.ScriptModule)
    eager = PolicyRunner.from_checkpoint(ckpt)
    assert not eager.jit
    model, info = load_checkpoint(ckpt)
    for t in range(12):
        for r in (runner, eager):
            r.push_observation(arrays['rgb'][t], arrays['depth'][t], arrays['q'][t])
        expected = offline_prediction(model, info, ds[t])
        np.testing.assert_allclose(runner.predict(), expected, atol=1e-5, err_msg=f't={t}')
        np.testing.assert_allclose(eager.predict(), expected, atol=1e-5, err_msg=f't={t}')


def test_torchscript_failure_leaves_the_runner_eager(setup, monkeypatch):
    ckpt, ds, arrays = setup

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError('no TorchScript here')

    monkeypatch.setattr(torch.jit, 'trace', broken)
    runner = PolicyRunner.from_checkpoint(ckpt, jit=True)
    assert not runner.jit
    assert runner.jit_note == 'TorchScript trace failed, running eager: no TorchScript here'
    model, info = load_checkpoint(ckpt)
    for t in range(3):
        runner.push_observation(arrays['rgb'][t], arrays['depth'][t], arrays['q'][t])
    np.testing.assert_allclose(runner.predict(), offline_prediction(model, info, ds[2]), atol=1e-5)


def test_torchscript_that_disagrees_is_not_used(setup, monkeypatch):
    ckpt, _, _ = setup
    real_freeze = torch.jit.freeze

    def skewed(module: torch.jit.ScriptModule, *args: object, **kwargs: object):
        frozen = real_freeze(module, *args, **kwargs)

        class Off(torch.nn.Module):
            def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
                return frozen(*inputs) + 1.0

        return Off()

    monkeypatch.setattr(torch.jit, 'freeze', skewed)
    monkeypatch.setattr(torch.jit, 'optimize_for_inference', lambda m: m)
    runner = PolicyRunner.from_checkpoint(ckpt, jit=True)
    assert not runner.jit
    assert 'differs from the model by 1.00e+00' in runner.jit_note
