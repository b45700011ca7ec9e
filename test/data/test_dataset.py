"""KinovaJointDataset: the sample semantics of docs/data.md, the cache, errors for bad files."""

from dataclasses import fields
import inspect
import json
from pathlib import Path
import pickle

from helpers import episode_arrays
from kinova_policy_ros.core.config import DataConfig
from kinova_policy_ros.core.errors import ConfigError, SchemaError
from kinova_policy_ros.data import dataset as dataset_mod
from kinova_policy_ros.data.dataset import KinovaJointDataset
from kinova_policy_ros.data.preprocess import fit_stream, JointNormalizer, preprocess_frames
from kinova_policy_ros.data.schema import save_episode
import numpy as np
import pytest
import torch

K, T, HW = 4, 5, (8, 10)


@pytest.fixture
def episodes(tmp_path: Path) -> list[Path]:
    paths = []
    for i, n in enumerate((9, 6)):
        arrays = episode_arrays(seed=i, num_frames=n, hw=(16, 20))
        # A distinct, exactly known joint signal per frame and joint.
        arrays['q'] = (np.arange(n)[:, None] * 0.1 + np.arange(7)[None] + i).astype(np.float64)
        arrays['dq'] = np.full((n, 7), 0.5 + i, np.float64)
        arrays['dq'][:, 6] = 3.0  # a constant joint velocity over both episodes
        paths.append(save_episode(tmp_path / 'data' / f'ep_{i}.npz', arrays))
    return paths


def make(paths, **kw) -> KinovaJointDataset:
    kw.setdefault('cache_dir', paths[0].parent.parent / 'cache')
    kw.setdefault('resize_hw', HW)
    return KinovaJointDataset(
        paths[0].parent, obs_horizon=K, pred_horizon=T, max_depth_m=0.81, **kw
    )


def test_items_match_an_independent_computation(episodes):
    ds = make(episodes)
    assert len(ds) == 9 + 6
    raw = [np.load(p) for p in episodes]
    q_all = np.concatenate([z['q'] for z in raw])
    dq_all = np.concatenate([z['dq'] for z in raw])
    qn = JointNormalizer(q_all.min(0), q_all.max(0))
    dqn = JointNormalizer(dq_all.min(0), dq_all.max(0))
    for index in range(len(ds)):
        e, t = (0, index) if index < 9 else (1, index - 9)
        z = raw[e]
        n = z['q'].shape[0]
        obs = [max(0, min(n - 1, i)) for i in range(t - K + 1, t + 1)]
        fut = [min(n - 1, i) for i in range(t + 1, t + 1 + T)]
        rgb, depth = preprocess_frames(z['rgb'][obs], z['depth'][obs], HW, 0.81, True)
        item = ds[index]
        assert set(item) == {'rgb', 'depth', 'q', 'dq', 'gt_joint'}
        assert all(v.dtype == torch.float32 for v in item.values())
        assert torch.equal(item['rgb'], rgb)
        assert torch.equal(item['depth'], depth)
        np.testing.assert_allclose(item['q'].numpy(), qn.normalize(z['q'][obs]), atol=1e-6)
        np.testing.assert_allclose(item['dq'].numpy(), dqn.normalize(z['dq'][obs]), atol=1e-6)
        np.testing.assert_allclose(item['gt_joint'].numpy(), qn.normalize(z['q'][fut]), atol=1e-6)
    assert ds[0]['rgb'].shape == (K, 3, *HW)
    assert ds[0]['depth'].shape == (K, 1, *HW)
    assert ds[0]['gt_joint'].shape == (T, 7)


def test_edge_padding_at_both_ends(episodes):
    ds = make(episodes)
    first = ds[0]  # t = 0: the whole window is frame 0
    assert all(torch.equal(first['q'][0], first['q'][k]) for k in range(K))
    last = ds[8]  # t = N-1: every future target is the last frame
    assert all(torch.equal(last['gt_joint'][0], last['gt_joint'][i]) for i in range(T))
    assert torch.equal(last['gt_joint'][0], last['q'][-1])


def test_stats_range_constant_joint_and_given_stats(episodes):
    ds = make(episodes)
    q = torch.cat([ds[i]['q'] for i in range(len(ds))])
    assert float(q.min()) == pytest.approx(-1.0, abs=1e-6)
    assert float(q.max()) == pytest.approx(1.0, abs=1e-6)
    dq = torch.cat([ds[i]['dq'] for i in range(len(ds))])
    assert torch.all(dq[:, 6] == 0.0)  # constant joint: 0, not NaN
    other = make(episodes[:1], stats=ds.stats)
    assert other.stats is ds.stats
    np.testing.assert_array_equal(other[3]['q'].numpy(), ds[3]['q'].numpy())


def test_max_episode_length_truncates_windows_and_targets(episodes):
    ds = make(episodes, max_episode_length=5)
    assert len(ds) == 5 + 5
    assert ds.locate(5) == (1, 0)
    tail = ds[4]  # t = 4 = last kept frame: targets repeat frame 4, not frames 5..8
    assert torch.equal(tail['gt_joint'][-1], tail['q'][-1])


def test_frame_period_and_joint_names(episodes):
    ds = make(episodes)
    assert ds.frame_period_s() == pytest.approx(1 / 15, rel=1e-6)
    assert ds.joint_names == tuple(f'joint_{i}' for i in range(1, 8))
    with pytest.raises(IndexError, match=r'^index 15 out of range for 15 samples$'):
        ds[len(ds)]


def test_cache_is_built_once_and_keyed_by_content(episodes, monkeypatch):
    make(episodes)
    calls: list[tuple] = []
    real = dataset_mod._build_cache

    def spy(*args):
        calls.append(args)
        real(*args)

    monkeypatch.setattr(dataset_mod, '_build_cache', spy)
    ds = make(episodes)
    assert calls == []  # reused
    arrays = episode_arrays(seed=7, num_frames=9, hw=(16, 20))
    save_episode(episodes[0], arrays, overwrite=True)
    ds = make(episodes)
    assert len(calls) == 1 and calls[0][0] == episodes[0]  # only the changed file
    np.testing.assert_allclose(ds.episodes[0].q, arrays['q'], err_msg='cache served stale content')


def test_pickling_does_not_copy_the_frames(episodes):
    ds = make(episodes)
    blob = pickle.dumps(ds)
    assert len(blob) < 20_000  # memory maps reopen in the worker; they are not serialized
    clone = pickle.loads(blob)
    assert torch.equal(clone[7]['rgb'], ds[7]['rgb'])


def test_dataloader_with_workers(episodes):
    ds = make(episodes)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2)
    batch = next(iter(loader))
    assert batch['rgb'].shape == (4, K, 3, *HW)
    assert torch.equal(batch['q'][2], ds[2]['q'])


def test_all_bad_files_are_reported_at_once(tmp_path: Path):
    good = save_episode(tmp_path / 'd' / 'a_good.npz', episode_arrays(0))
    bad1 = episode_arrays(1)
    bad1['depth'][0, 0, 0] = np.inf
    np.savez(tmp_path / 'd' / 'b_bad.npz', **bad1)
    (tmp_path / 'd' / 'c_broken.npz').write_bytes(b'garbage')
    with pytest.raises(SchemaError) as info:
        KinovaJointDataset(tmp_path / 'd', cache_dir=tmp_path / 'cache')
    msg = str(info.value)
    assert '2 of 3 episode file(s) are invalid' in msg
    assert "b_bad.npz: key 'depth': contains NaN or inf" in msg
    assert 'c_broken.npz: cannot read npz episode' in msg
    assert good.name not in msg
    metas = list((tmp_path / 'cache').glob('*/meta.json'))
    assert [json.loads(m.read_text())['source'] for m in metas] == [good.name]  # only it cached


def test_empty_folder_and_mismatched_joint_names(tmp_path: Path):
    (tmp_path / 'empty').mkdir()
    with pytest.raises(SchemaError, match=r'no \*\.npz episode files'):
        KinovaJointDataset(tmp_path / 'empty', cache_dir=tmp_path / 'c')
    a = episode_arrays(0)
    b = episode_arrays(1)
    b['joint_names'] = np.array([f'arm_joint_{i}' for i in range(1, 8)])
    save_episode(tmp_path / 'm' / 'a.npz', a)
    save_episode(tmp_path / 'm' / 'b.npz', b)
    with pytest.raises(SchemaError, match="disagree on key 'joint_names'"):
        KinovaJointDataset(tmp_path / 'm', cache_dir=tmp_path / 'c')


@pytest.mark.parametrize('index', [0, 3, 8, 9, 13])
def test_segments_equal_consecutive_samples(episodes, index: int):
    ds = make(episodes)
    s_n = 3
    seg = ds.segment(index, s_n)
    assert seg['rgb'].shape == (K + s_n - 1, 3, *HW)
    assert seg['window_index'].shape == (s_n, K)
    e, t = ds.locate(index)
    n = int(ds.lengths[e])
    t0 = max(0, min(t, n - s_n))
    start = index - t + t0  # the sample index of the first window
    for s in range(s_n):
        item = ds[start + s]
        frames = seg['window_index'][s]
        assert torch.equal(seg['rgb'][frames], item['rgb'])
        assert torch.equal(seg['depth'][frames], item['depth'])
        assert torch.equal(seg['q'][s], item['q'])
        assert torch.equal(seg['gt_joint'][s], item['gt_joint'])


@pytest.mark.parametrize('index', [0, 2, 8, 9, 13])
def test_anchor_frame_heads_every_window(episodes, index: int):
    plain, anchored = make(episodes), make(episodes, anchor_frame=True)
    item, ref = anchored[index], plain[index]
    e, _ = anchored.locate(index)
    first = plain[9 * e]  # t = 0 of the same episode: its window is frame 0 repeated
    assert item['rgb'].shape == (1 + K, 3, *HW) and item['q'].shape == (1 + K, 7)
    for key in ('rgb', 'depth', 'q', 'dq'):
        assert torch.equal(item[key][0], first[key][0]), key  # the episode's first frame
        assert torch.equal(item[key][1:], ref[key]), key  # then the usual window
    assert torch.equal(item['gt_joint'], ref['gt_joint'])
    # segments: frame 0 is loaded once and every window starts with it
    seg = anchored.segment(index, 3)
    assert seg['rgb'].shape == (1 + K + 2, 3, *HW)
    assert seg['window_index'].shape == (3, 1 + K)
    assert torch.all(seg['window_index'][:, 0] == 0)
    assert torch.equal(seg['rgb'][0], first['rgb'][0])


def test_goal_is_the_final_end_effector_position_from_now(episodes):
    from kinova_policy_ros.data.dataset import GOAL_SCALE

    ds = make(episodes, with_goal=True)
    z = np.load(episodes[1])
    item = ds[9 + 2]  # episode 1, t = 2
    expected = (z['ee_xyz'][-1] - z['ee_xyz'][2]) * GOAL_SCALE
    np.testing.assert_allclose(item['goal'].numpy(), expected, atol=1e-6)
    seg = ds.segment(9 + 1, 3)  # windows at t = 1, 2, 3
    np.testing.assert_allclose(seg['goal'][1].numpy(), expected, atol=1e-6)
    assert 'goal' not in make(episodes)[0]


def test_goal_of_the_tool_point_comes_from_the_recorded_joints(episodes):
    from kinova_policy_ros.core import kinematics as kin
    from kinova_policy_ros.data.dataset import GOAL_SCALE

    ds = make(episodes, with_goal=True, goal_offset=0.1086)
    z = np.load(episodes[1])
    tcp = kin.tool_point(z['q'], 0.1086)
    expected = (tcp[-1] - tcp[2]) * GOAL_SCALE
    np.testing.assert_allclose(ds[9 + 2]['goal'].numpy(), expected, atol=1e-5)
    seg = ds.segment(9 + 1, 3)
    np.testing.assert_allclose(seg['goal'][1].numpy(), expected, atol=1e-5)


def _every_field_changed() -> DataConfig:
    cfg = DataConfig(
        resize_hw=HW,
        crop=(0.1, 0.05, 0.8, 0.9),
        fit='stretch',
        max_depth_m=0.81,
        normalize_depth01=False,
        max_episode_length=7,
        obs_horizon=K,
        anchor_frame=True,
        pred_horizon=T,
        action_horizon=2,
        val_fraction=0.3,
    )
    default = DataConfig()
    same = [f.name for f in fields(cfg) if getattr(cfg, f.name) == getattr(default, f.name)]
    assert same == [], f'set these to a non-default value: {same}'
    return cfg


def test_from_config_keeps_every_data_field(episodes):
    cfg = _every_field_changed()
    ds = KinovaJointDataset.from_config(
        episodes, cfg, cache_dir=episodes[0].parent.parent / 'cache'
    )
    assert ds.cfg == cfg
    assert ds.cfg.action_horizon == 2 and ds.cfg.val_fraction == 0.3
    assert len(ds) == 7 + 6  # max_episode_length applied
    assert ds[0]['rgb'].shape == (1 + K, 3, *HW)  # anchor_frame applied
    assert ds[0]['gt_joint'].shape == (T, 7)


def test_constructor_takes_every_data_field(episodes):
    params = set(inspect.signature(KinovaJointDataset).parameters)
    assert {f.name for f in fields(DataConfig)} <= params
    assert make(episodes).cfg.action_horizon == min(T, 6)  # the default when not given
    assert make(episodes, action_horizon=3).cfg.action_horizon == 3


def test_from_config_fails_loudly_when_a_field_is_lost(episodes):
    class Lossy(KinovaJointDataset):
        def __init__(self, *args, action_horizon=None, **kw) -> None:
            super().__init__(*args, **kw)  # drops action_horizon

    cfg = _every_field_changed()
    with pytest.raises(ConfigError, match=r'data\.action_horizon is 2, the dataset would use 5'):
        Lossy.from_config(episodes, cfg, cache_dir=episodes[0].parent.parent / 'cache')


def test_frames_of_another_aspect_are_centre_cropped_and_the_geometry_recorded(episodes):
    # 16x20 frames, an 8x8 model input: the centred 16x16 box (columns 2..18), then the resize.
    report = {'image': {'native_hw': [720, 1280], 'depth_native_hw': [270, 480]}}
    episodes[0].with_suffix('.json').write_text(json.dumps(report))
    ds = make(episodes, resize_hw=(8, 8))
    z = np.load(episodes[0])
    item = ds[3]
    obs = [0, 1, 2, 3]
    want_rgb = fit_stream(np.ascontiguousarray(z['rgb'][obs][:, :, 2:18]), (8, 8), 'rgb')
    np.testing.assert_allclose(
        item['rgb'].numpy(), want_rgb.transpose(0, 3, 1, 2) / 255.0, rtol=1e-6
    )
    want_depth = fit_stream(np.ascontiguousarray(z['depth'][obs][:, :, 2:18]), (8, 8), 'depth')
    np.testing.assert_allclose(
        item['depth'][:, 0].numpy(), np.clip(want_depth, 0, 0.81) / 0.81, rtol=1e-6
    )
    stretched = make(episodes, resize_hw=(8, 8), fit='stretch')  # its own cache entry
    assert not torch.equal(stretched[3]['rgb'], item['rgb'])
    geometry = ds.stream_geometry()
    # episode 0 has the converter's report (camera sizes), episode 1 only its frames
    assert geometry.rgb_hw == ((16, 20), (720, 1280))
    assert geometry.depth_hw == ((16, 20), (270, 480))
    assert (geometry.resize_hw, geometry.crop, geometry.fit) == ((8, 8), None, 'center_crop')
    assert stretched.stream_geometry().fit == 'stretch'
