"""The checkpoint directory: safetensors + JSON (no pickle), atomic writes, refusals by field."""

import dataclasses
import json
from pathlib import Path
import pickle
import re
import shutil

from kinova_policy_ros.core.config import DataConfig, ModelConfig
from kinova_policy_ros.core.errors import CheckpointError
from kinova_policy_ros.data.preprocess import JointStats, StreamGeometry
from kinova_policy_ros.policy.checkpoint import (
    CheckpointInfo,
    CONFIG_FILE,
    link_checkpoint,
    load_checkpoint,
    MODEL_FILE,
    read_checkpoint_info,
    save_checkpoint,
    STATE_JSON_FILE,
    STATE_TENSORS_FILE,
)
from kinova_policy_ros.policy.model import TransformerJointGripperNoDQ
from kinova_policy_ros.testing.synthetic import make_random_checkpoint
import numpy as np
import pytest
from safetensors.torch import load_file, save_file
import torch

SMALL = ModelConfig(d_model=32, dim_feedforward=64, img_feat_dim=16, q_feat_dim=8)
NAMES = tuple(f'joint_{i}' for i in range(1, 8))


def model_and_info(out: Path, step: int = 7) -> tuple[TransformerJointGripperNoDQ, CheckpointInfo]:
    torch.manual_seed(0)
    data = DataConfig(resize_hw=(24, 32), obs_horizon=4, pred_horizon=6, action_horizon=3)
    model = TransformerJointGripperNoDQ(SMALL, obs_horizon=4)
    stats = JointStats(-np.arange(1.0, 8.0), np.arange(1.0, 8.0), -np.ones(7), np.ones(7))
    info = CheckpointInfo(out, SMALL, data, stats, NAMES, 0.05, step, {'weights': 'ema'})
    return model, info


def test_round_trip(tmp_path: Path):
    out = tmp_path / 'ckpt'
    model, info = model_and_info(out)
    extra_tensors = {'optim.0.exp_avg': torch.arange(6.0).view(2, 3), 'rng.torch': torch.ones(3)}
    state = {'step': 7, 'best_val': None, 'scheduler': {'last_epoch': 7}}
    assert save_checkpoint(out, model, info, extra_tensors, state) == out
    loaded, got = load_checkpoint(out)
    assert not loaded.training  # ready to run
    want = model.state_dict()
    assert loaded.state_dict().keys() == want.keys()
    assert all(torch.equal(v, want[k]) for k, v in loaded.state_dict().items())
    assert (got.path, got.model, got.data, got.joint_names, got.dt, got.step) == (
        out, SMALL, info.data, NAMES, 0.05, 7
    )
    assert got.extra == {'weights': 'ema'}
    for key in JointStats.KEYS:
        np.testing.assert_array_equal(getattr(got.stats, key), getattr(info.stats, key))
    tensors = load_file(str(out / STATE_TENSORS_FILE))
    assert tensors.keys() == extra_tensors.keys()
    assert all(torch.equal(tensors[k], v) for k, v in extra_tensors.items())
    assert json.loads((out / STATE_JSON_FILE).read_text()) == state
    assert json.loads((out / CONFIG_FILE).read_text())['model_class'] == type(model).__name__


def test_no_pickle_anywhere(tmp_path: Path, monkeypatch):
    out = tmp_path / 'ckpt'
    model, info = model_and_info(out)
    save_checkpoint(out, model, info, {'x': torch.zeros(2)}, {'step': 1})
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [MODEL_FILE, CONFIG_FILE, STATE_TENSORS_FILE, STATE_JSON_FILE]
    )
    for name in (MODEL_FILE, STATE_TENSORS_FILE):  # safetensors: u64 header size, JSON header
        raw = (out / name).read_bytes()
        header = int.from_bytes(raw[:8], 'little')
        assert json.loads(raw[8:8 + header])['__metadata__' if name == MODEL_FILE else 'x']
    for name in (CONFIG_FILE, STATE_JSON_FILE):
        json.loads((out / name).read_text())

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError('unpickling attempted')

    monkeypatch.setattr(pickle, 'load', refuse)
    monkeypatch.setattr(pickle, 'loads', refuse)
    monkeypatch.setattr(torch, 'load', refuse)
    loaded, _ = load_checkpoint(out)
    assert torch.equal(loaded.state_dict()['head.2.weight'], model.state_dict()['head.2.weight'])


@pytest.fixture(scope='module')
def ckpt(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('checkpoint')
    return make_random_checkpoint(
        root / 'ckpt', d_model=32, dim_feedforward=64, img_feat_dim=16, q_feat_dim=8
    )


def broken(ckpt: Path, tmp_path: Path, edit) -> Path:
    dst = tmp_path / 'broken'
    shutil.copytree(ckpt, dst)
    cfg = json.loads((dst / CONFIG_FILE).read_text())
    edit(cfg, dst)
    (dst / CONFIG_FILE).write_text(json.dumps(cfg))
    return dst


@pytest.mark.parametrize(
    ('edit', 'message'),
    [
        (lambda c, d: c['stats'].pop('q_max'), "missing normalization stat 'q_max'"),
        (lambda c, d: c.pop('dt'), "missing field 'dt'"),
        (lambda c, d: c.update(dt=-1), "field 'dt' must be a positive number"),
        (lambda c, d: c.update(format_version=99), "field 'format_version' is 99"),
        (lambda c, d: c['model'].update(d_model=64), r"tensor '.*' has shape"),
        (lambda c, d: c['model'].update(nhead=5), 'model.d_model: must be divisible'),
        (lambda c, d: c['data'].update(bogus=1), 'data.bogus: unknown key'),
        (lambda c, d: c.update(joint_names=['a'] * 7), "field 'joint_names' must be 7 unique"),
        (lambda c, d: (d / MODEL_FILE).write_bytes(b'xx'), 'cannot read weights'),
    ],
)
def test_invalid_checkpoints_are_refused_with_the_field(ckpt: Path, tmp_path: Path, edit, message):
    bad = broken(ckpt, tmp_path, edit)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(bad)


def test_a_missing_stat_names_the_file_and_the_stat(ckpt: Path, tmp_path: Path):
    bad = broken(ckpt, tmp_path, lambda c, d: c['stats'].pop('dq_min'))
    message = re.escape(f"{bad / CONFIG_FILE}: stats: missing normalization stat 'dq_min'")
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint_info(bad)


def test_a_malformed_stat_names_the_file_and_the_field(ckpt: Path, tmp_path: Path):
    bad = broken(ckpt, tmp_path, lambda c, d: c['stats'].update(q_min=[0.0] * 6))
    message = re.escape(f"{bad / CONFIG_FILE}: field 'stats': stats.q_max: expected 6 values")
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint_info(bad)


def test_missing_files_are_named(ckpt: Path, tmp_path: Path):
    with pytest.raises(CheckpointError, match='checkpoint directory does not exist'):
        read_checkpoint_info(tmp_path / 'nope')
    (tmp_path / 'empty').mkdir()
    message = re.escape(f'{tmp_path / "empty" / CONFIG_FILE}: cannot read checkpoint config')
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint_info(tmp_path / 'empty')
    no_weights = broken(ckpt, tmp_path, lambda c, d: (d / MODEL_FILE).unlink())
    message = re.escape(f'{no_weights / MODEL_FILE}: cannot read weights')
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(no_weights)
    bad_json = tmp_path / 'bad_json'
    shutil.copytree(ckpt, bad_json)
    (bad_json / CONFIG_FILE).write_text('{"format_version": ')
    message = re.escape(f'{bad_json / CONFIG_FILE}: invalid JSON')
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint_info(bad_json)


def test_missing_and_unexpected_tensors_are_named(ckpt: Path, tmp_path: Path):
    weights = load_file(str(ckpt / MODEL_FILE))
    missing = broken(ckpt, tmp_path, lambda c, d: None)
    save_file({k: v for k, v in weights.items() if k != 'head.2.bias'}, str(missing / MODEL_FILE))
    message = r"model\.safetensors: missing tensor 'head\.2\.bias'"
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(missing)
    save_file({**weights, 'extra.weight': torch.zeros(1)}, str(missing / MODEL_FILE))
    with pytest.raises(CheckpointError, match=r"unexpected tensor 'extra\.weight'"):
        load_checkpoint(missing)


def test_a_failed_write_leaves_nothing_and_keeps_the_old_checkpoint(tmp_path: Path):
    out = tmp_path / 'ckpts' / 'step_000001'
    model, info = model_and_info(out, step=1)
    save_checkpoint(out, model, info)
    before = (out / CONFIG_FILE).read_text()
    _, info2 = model_and_info(out, step=2)
    with pytest.raises(TypeError, match='not JSON serializable'):
        save_checkpoint(out, model, info2, {'x': torch.zeros(1)}, {'bad': object()})
    with pytest.raises(AttributeError):  # not a tensor: fails inside save_file
        save_checkpoint(tmp_path / 'ckpts' / 'step_000002', model, info2, {'x': [1.0]})
    assert sorted(p.name for p in (tmp_path / 'ckpts').iterdir()) == ['step_000001']  # no temp
    assert sorted(p.name for p in out.iterdir()) == [CONFIG_FILE, MODEL_FILE]
    assert (out / CONFIG_FILE).read_text() == before


def test_save_replaces_an_existing_checkpoint(tmp_path: Path):
    out = tmp_path / 'ckpt'
    model, info = model_and_info(out, step=1)
    save_checkpoint(out, model, info, {'x': torch.zeros(1)}, {'step': 1})
    save_checkpoint(out, model, model_and_info(out, step=2)[1])
    assert read_checkpoint_info(out).step == 2
    assert sorted(p.name for p in out.iterdir()) == [CONFIG_FILE, MODEL_FILE]  # old state gone
    assert [p.name for p in tmp_path.iterdir()] == ['ckpt']


def test_link_points_at_the_target_relatively_and_moves_atomically(tmp_path: Path):
    root = tmp_path / 'checkpoints'
    (root / 'step_000001').mkdir(parents=True)
    (root / 'step_000002').mkdir()
    link_checkpoint(root / 'step_000001', root / 'last')
    assert (root / 'last').is_symlink() and str((root / 'last').readlink()) == 'step_000001'
    link_checkpoint(root / 'step_000002', root / 'last')
    assert (root / 'last').resolve() == (root / 'step_000002').resolve()
    moved = tmp_path / 'moved'
    root.rename(moved)  # relative: the run folder can be moved or copied
    assert (moved / 'last').resolve() == (moved / 'step_000002').resolve()
    assert sorted(p.name for p in moved.iterdir()) == ['last', 'step_000001', 'step_000002']


def test_geometry_is_recorded_and_an_old_checkpoint_reads_as_unknown_and_stretched(
    tmp_path: Path,
):
    out = tmp_path / 'ckpt'
    model, info = model_and_info(out)
    geometry = StreamGeometry(((720, 1280),), ((270, 480),), (24, 32), None, 'center_crop')
    save_checkpoint(out, model, dataclasses.replace(info, geometry=geometry))
    got = read_checkpoint_info(out)
    assert got.geometry == geometry and got.data.fit == 'center_crop'
    assert 'geometry' not in got.extra
    raw = json.loads((out / CONFIG_FILE).read_text())
    assert raw['geometry']['depth_hw'] == [[270, 480]]
    # A checkpoint from before: no geometry (unknown) and no data.fit (streams were stretched).
    del raw['geometry']
    del raw['data']['fit']
    (out / CONFIG_FILE).write_text(json.dumps(raw))
    old = read_checkpoint_info(out)
    assert old.geometry is None and old.data.fit == 'stretch'
    raw['geometry'] = {'rgb_hw': [[720, 1280]], 'depth_hw': 'x', 'resize_hw': [24, 32], 'fit': 's'}
    (out / CONFIG_FILE).write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match=r'json: geometry\.depth_hw: expected a list'):
        read_checkpoint_info(out)
