"""The npz episode schema: validation, load, atomic save, errors naming file and key."""

from pathlib import Path

from helpers import episode_arrays, ls
from kinova_policy_ros.core.errors import SchemaError
from kinova_policy_ros.data.schema import (
    EPISODE_KEYS,
    FRAME_KEYS,
    load_episode,
    open_frame_stream,
    save_episode,
    validate_episode,
    validate_files,
)
import numpy as np
import pytest


def test_valid_episode_round_trips(tmp_path: Path):
    arrays = episode_arrays()
    path = save_episode(tmp_path / 'ep.npz', arrays)
    ep = load_episode(path)
    for key in EPISODE_KEYS:
        np.testing.assert_array_equal(np.asarray(ep.to_arrays()[key]), np.asarray(arrays[key]))
    assert ep.num_frames == 12
    assert ep.joint_names == tuple(f'joint_{i}' for i in range(1, 8))
    assert ls(tmp_path) == ['ep.npz']  # no temp files left behind


@pytest.mark.parametrize(
    ('key', 'corrupt', 'message'),
    [
        ('rgb', lambda a: a['rgb'][..., :2], r"key 'rgb': expected shape \[N,H,W,3\]"),
        ('rgb', lambda a: a['rgb'].astype(np.float32), "key 'rgb': expected dtype uint8"),
        ('depth', lambda a: np.where(a['depth'] > 0.81, np.nan, a['depth']), 'NaN or inf'),
        ('depth', lambda a: np.where(a['depth'] > 0.81, np.inf, a['depth']), 'NaN or inf'),
        ('depth', lambda a: np.where(a['depth'] > 0.81, -np.inf, a['depth']), 'NaN or inf'),
        ('depth', lambda a: np.where(a['depth'] > 0.81, -0.5, a['depth']), 'negative depth'),
        ('depth', lambda a: a['depth'].astype(np.float64), 'expected dtype float32'),
        ('depth', lambda a: a['depth'][:, :-1], 'differs from rgb'),
        ('q', lambda a: a['q'][:, :6], r"key 'q': expected shape \[N,7\]"),
        ('q', lambda a: a['q'][:-1], "key 'q': has 11 frames, stamp_ns has 12"),
        ('dq', lambda a: np.full_like(a['dq'], np.inf), "key 'dq': contains NaN or inf"),
        ('stamp_ns', lambda a: a['stamp_ns'][::-1].copy(), 'not strictly increasing at frame 1'),
        ('stamp_ns', lambda a: a['stamp_ns'].astype(np.float64), 'expected dtype int64'),
        ('joint_names', lambda a: a['joint_names'][:6], 'expected 7 strings'),
        ('joint_names', lambda a: np.array(['j'] * 7), 'must be unique'),
        ('camera_K', lambda a: np.eye(4), r'expected shape \[3,3\]'),
        ('camera_width', lambda a: np.int64(0), 'positive integer'),
    ],
)
def test_each_violation_names_file_and_key(tmp_path: Path, key, corrupt, message):
    arrays = episode_arrays()
    arrays[key] = corrupt(arrays)
    problems = validate_episode(arrays, 'bad.npz')
    assert problems, f'corrupting {key} was not detected'
    assert any(p.startswith(f"bad.npz: key '{key}'") for p in problems), problems
    with pytest.raises(SchemaError, match=message):
        save_episode(tmp_path / 'bad.npz', arrays)
    assert ls(tmp_path) == []  # nothing written


@pytest.mark.parametrize('value', [0.0, -0.0, 1e-30, float(np.finfo(np.float32).max)])
def test_extreme_valid_depth_values_pass(value: float) -> None:
    # the one-pass check (uint32 bits below the infinity pattern) must not reject -0.0, a
    # subnormal or the largest float32, nor let anything past its fallback
    arrays = episode_arrays()
    depth = arrays['depth'].astype(np.float32)
    depth[3, 1, 2] = np.float32(value)
    arrays['depth'] = depth
    assert validate_episode(arrays, 'ok.npz') == []


def test_missing_and_unknown_keys_are_reported():
    arrays = episode_arrays()
    del arrays['ee_rpy']
    arrays['gripper'] = np.zeros(3)
    problems = validate_episode(arrays, 'x.npz')
    assert "x.npz: key 'ee_rpy': missing" in problems
    assert any("key 'gripper': unknown key" in p for p in problems)


def test_save_refuses_to_overwrite_unless_asked(tmp_path: Path):
    save_episode(tmp_path / 'ep.npz', episode_arrays(0))
    with pytest.raises(SchemaError, match='exists'):
        save_episode(tmp_path / 'ep.npz', episode_arrays(1))
    save_episode(tmp_path / 'ep.npz', episode_arrays(1), overwrite=True)
    np.testing.assert_array_equal(load_episode(tmp_path / 'ep.npz').q, episode_arrays(1)['q'])


def test_failed_write_leaves_previous_file_and_no_temp(tmp_path: Path, monkeypatch):
    save_episode(tmp_path / 'ep.npz', episode_arrays(0))
    before = (tmp_path / 'ep.npz').read_bytes()

    def boom(*args, **kwargs):
        raise OSError('disk full')

    monkeypatch.setattr(np, 'savez_compressed', boom)
    with pytest.raises(SchemaError, match='disk full'):
        save_episode(tmp_path / 'ep.npz', episode_arrays(1), overwrite=True)
    assert (tmp_path / 'ep.npz').read_bytes() == before
    assert ls(tmp_path) == ['ep.npz']


def test_unreadable_file_is_wrapped_with_path(tmp_path: Path):
    bad = tmp_path / 'truncated.npz'
    bad.write_bytes(b'PK\x03\x04 not really a zip')
    with pytest.raises(SchemaError, match=r'truncated\.npz: cannot read npz episode'):
        load_episode(bad)


def test_validate_files_reports_every_bad_file(tmp_path: Path):
    good = save_episode(tmp_path / 'good.npz', episode_arrays(0))
    a = episode_arrays(1)
    a['q'][3, 2] = np.nan
    np.savez(tmp_path / 'bad_q.npz', **a)
    b = episode_arrays(2)
    del b['camera_D']
    np.savez(tmp_path / 'bad_d.npz', **b)
    with pytest.raises(SchemaError) as info:
        validate_files([good, tmp_path / 'bad_q.npz', tmp_path / 'bad_d.npz'])
    text = str(info.value)
    assert "bad_q.npz: key 'q': contains NaN or inf" in text
    assert "bad_d.npz: key 'camera_D': missing" in text
    assert 'good.npz' not in text


def test_save_episode_through_a_frame_stream(tmp_path: Path) -> None:
    arrays = episode_arrays()
    sources = {'rgb': arrays['rgb'].copy(), 'depth': arrays['depth'].copy()}
    stream = open_frame_stream(tmp_path / 'ep.npz', sources)
    for i in range(len(arrays['stamp_ns'])):
        stream.put('rgb', i)
        stream.put('depth', i)
    path = save_episode(tmp_path / 'ep.npz', {**arrays, **sources}, compress=False, stream=stream)
    assert ls(tmp_path) == ['ep.npz']
    ep = load_episode(path)
    for key in EPISODE_KEYS:
        np.testing.assert_array_equal(np.asarray(ep.to_arrays()[key]), np.asarray(arrays[key]))


@pytest.mark.parametrize(
    ('change', 'message'),
    [
        ({'compress': True}, 'a frame stream writes uncompressed files only'),
        ({'drop_last': True}, r"key 'rgb' has shape \(11, 16, 20, 3\), the stream holds"),
        ({'nan': True}, r"key 'depth': contains NaN or inf \(.*\) \(in frame 5\)"),
        ({'exists': True}, 'exists'),
    ],
)
def test_save_episode_stream_failures_leave_nothing(tmp_path: Path, change, message) -> None:
    arrays = episode_arrays()
    sources = {'rgb': arrays['rgb'], 'depth': arrays['depth']}
    stream = open_frame_stream(tmp_path / 'ep.npz', sources)
    for i in range(len(arrays['stamp_ns'])):
        stream.put('rgb', i)
        if change.get('nan') and i == 5:  # a bad frame given to put(): checked as written
            stream.put('depth', i, np.full(arrays['depth'].shape[1:], np.nan, np.float32))
        else:
            stream.put('depth', i)
    if change.get('exists'):
        (tmp_path / 'ep.npz').write_bytes(b'old')
    if change.get('drop_last'):
        arrays = {k: v[:-1] if k in FRAME_KEYS else v for k, v in arrays.items()}
    with pytest.raises(SchemaError, match=message):
        save_episode(
            tmp_path / 'ep.npz', arrays, compress=change.get('compress', False), stream=stream
        )
    assert ls(tmp_path) == (['ep.npz'] if change.get('exists') else [])  # temp file deleted


def test_open_frame_stream_checks_keys(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match=r"\['images'\] are not per-frame keys"):
        open_frame_stream(tmp_path / 'ep.npz', {'images': np.zeros((2, 3))})
