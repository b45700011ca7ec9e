"""The frame stream and the public writer names (kinova_policy_ros.data.npz_writer)."""

import ctypes
import errno
import os
from pathlib import Path
import zipfile

from kinova_policy_ros.data import npz_format, npz_writer
from kinova_policy_ros.data.npz_writer import FrameStream
import numpy as np
import pytest


def _assert_same(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with np.load(path) as z:
        assert sorted(z.files) == sorted(arrays)
        for key, want in arrays.items():
            got = z[key]
            assert got.dtype == want.dtype and got.shape == want.shape, key
            np.testing.assert_array_equal(got, want, err_msg=key)


def test_npz_writer_keeps_the_public_names():
    assert npz_writer.write_npz is npz_format.write_npz
    assert npz_writer.preallocate is npz_format.preallocate
    assert set(npz_writer.__all__) == {'FrameStream', 'preallocate', 'write_npz'}


def _stream(tmp_path: Path) -> tuple[FrameStream, dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    sources = {
        'rgb': rng.integers(0, 255, (6, 32, 40, 3), dtype=np.uint8),
        'depth': rng.random((6, 32, 40)).astype(np.float32),
    }
    return FrameStream(tmp_path / 'ep.tmp', sources), sources


def test_frame_stream_round_trip_in_any_interleaving(tmp_path: Path) -> None:
    stream, sources = _stream(tmp_path)
    assert stream.keys == ('rgb', 'depth') and stream.shape('depth') == (6, 32, 40)
    order = [('rgb', 0), ('rgb', 1), ('depth', 0), ('rgb', 2), ('rgb', 3), ('depth', 1)]
    order += [('depth', 2), ('depth', 3), ('rgb', 4), ('rgb', 5), ('depth', 4), ('depth', 5)]
    for key, i in order:
        stream.put(key, i)
    others = {'stamp_ns': np.arange(6, dtype=np.int64), 'q': np.zeros((6, 7))}
    stream.finish(others)
    _assert_same(stream.path, {**sources, **others})
    with zipfile.ZipFile(stream.path) as z:
        assert z.testzip() is None
        assert z.namelist()[:2] == ['rgb.npy', 'depth.npy']


def test_frame_stream_writes_frames_given_to_put(tmp_path: Path) -> None:
    # frames handed to put() (e.g. a message buffer) are written instead of the source's slot,
    # mixed with source frames; the source slots are neither read nor changed
    stream, sources = _stream(tmp_path)
    original = {k: v.copy() for k, v in sources.items()}
    want = {k: v.copy() for k, v in sources.items()}
    given = {i: np.full((32, 40, 3), 10 * i, np.uint8) for i in (1, 2, 4)}
    for i in range(6):
        want['rgb'][i] = given.get(i, want['rgb'][i])
        given_frame = given.get(i)
        if given_frame is not None:
            given_frame.flags.writeable = False  # read-only buffers are fine
        stream.put('rgb', i, given_frame)
        stream.put('depth', i)
    stream.finish({})
    _assert_same(stream.path, want)
    np.testing.assert_array_equal(sources['rgb'], original['rgb'])
    with zipfile.ZipFile(stream.path) as z:
        assert z.testzip() is None  # the CRC covers the given frames


def test_frame_stream_rejects_misuse(tmp_path: Path) -> None:
    stream, _ = _stream(tmp_path)
    stream.put('rgb', 0)
    with pytest.raises(ValueError, match=r"'rgb' frame 1 is a uint8 \(32, 41, 3\) array"):
        stream.put('rgb', 1, np.zeros((32, 41, 3), np.uint8))
    with pytest.raises(ValueError, match=r"'rgb' frame 1 is a float32 .*C-contiguous: True"):
        stream.put('rgb', 1, np.zeros((32, 40, 3), np.float32))
    with pytest.raises(ValueError, match=r'C-contiguous: False\); a frame is uint8'):
        stream.put('rgb', 1, np.zeros((32, 80, 3), np.uint8)[:, ::2])
    with pytest.raises(ValueError, match=r"'rgb' frame 2 out of order \(expected 1\)"):
        stream.put('rgb', 2)
    with pytest.raises(ValueError, match=r"frames put \{'rgb': 1, 'depth': 0\}"):
        stream.finish({})
    stream.abort()
    assert not stream.path.exists()
    stream.abort()  # idempotent
    (tmp_path / 'taken.tmp').write_bytes(b'')
    with pytest.raises(FileExistsError, match=r'taken\.tmp'):
        FrameStream(tmp_path / 'taken.tmp', {'rgb': np.zeros((1, 2, 2, 3), np.uint8)})
    with pytest.raises(ValueError, match='differ in frame count'):
        FrameStream(tmp_path / 'n.tmp', {'a': np.zeros((2, 1)), 'b': np.zeros((3, 1))})
    assert not (tmp_path / 'n.tmp').exists()


def test_frame_stream_reports_write_errors(tmp_path: Path, monkeypatch) -> None:
    stream, _ = _stream(tmp_path)

    def full_disk(fd: int, data: object, offset: int) -> int:
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(npz_writer.os, 'pwritev', full_disk)
    for i in range(6):
        stream.put('rgb', i)
        stream.put('depth', i)
    with pytest.raises(OSError, match=r'writing frames failed: .*No space left on device'):
        stream.finish({})
    monkeypatch.setattr(npz_writer.os, 'pwritev', os.pwritev)
    stream.abort()
    assert not stream.path.exists()


def test_short_writes_are_continued(tmp_path: Path, monkeypatch) -> None:
    # pwritev may write less than asked (signals, quotas): the rest follows from where it stopped
    real = os.pwritev

    def at_most_1000(fd: int, views: list, offset: int) -> int:
        return real(fd, [bytes(views[0])[:1000]], offset)

    monkeypatch.setattr(npz_writer.os, 'pwritev', at_most_1000)
    stream, sources = _stream(tmp_path)
    given = {i: np.full((32, 40), 0.5 * i, np.float32) for i in range(6)}
    for i in range(6):
        stream.put('rgb', i)
        stream.put('depth', i, given[i])
    stream.finish({})
    _assert_same(stream.path, {'rgb': sources['rgb'], 'depth': np.stack(list(given.values()))})


def test_runs_group_frames_by_key_and_kind() -> None:
    a, b = np.zeros(2), np.ones(2)
    batch = [('rgb', 0, None), ('depth', 0, a), ('rgb', 1, None), ('depth', 1, b)]
    batch += [('rgb', 2, a), ('depth', 2, None), ('rgb', 4, None)]
    runs = npz_writer._runs(batch)
    assert [(k, first, stop) for k, first, stop, _ in runs] == [
        ('rgb', 0, 2),  # source frames 0-1: one write
        ('rgb', 2, 3),  # a given frame: a write of its own kind
        ('rgb', 4, 5),  # not consecutive
        ('depth', 0, 2),  # given frames 0-1: one pwritev
        ('depth', 2, 3),
    ]
    assert runs[0][3] is None and runs[3][3] is not None
    assert [f is a for f in runs[3][3]] == [True, False]


def _failing_fallocate(code: int):
    def fallocate(fd: int, mode: int, offset: int, size: int) -> int:
        ctypes.set_errno(code)
        return -1

    return fallocate


def test_frame_stream_without_fallocate_support(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(npz_format, '_FALLOCATE', _failing_fallocate(errno.EOPNOTSUPP))
    assert npz_format.preallocate(0, 10) is False
    stream, sources = _stream(tmp_path)
    for i in range(6):
        stream.put('rgb', i)
        stream.put('depth', i)
    stream.finish({})
    _assert_same(stream.path, sources)


def test_frame_stream_on_a_full_disk_fails_before_any_frame(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(npz_format, '_FALLOCATE', _failing_fallocate(errno.ENOSPC))
    with pytest.raises(OSError, match='No space left on device'):
        _stream(tmp_path)
    assert list(tmp_path.iterdir()) == []  # the temp file is removed


def test_read_frame_returns_what_was_written(tmp_path: Path) -> None:
    stream, sources = _stream(tmp_path)
    given = np.full((32, 40), 2.5, np.float32)
    stream.put('rgb', 0)
    stream.put('depth', 0, given)
    out = np.empty((32, 40), np.float32)
    stream.read_frame('depth', 0, out)  # waits for the writer first
    np.testing.assert_array_equal(out, given)
    rgb = np.empty((32, 40, 3), np.uint8)
    stream.read_frame('rgb', 0, rgb)
    np.testing.assert_array_equal(rgb, sources['rgb'][0])
    with pytest.raises(ValueError, match=r"'depth' frame 1 was not put"):
        stream.read_frame('depth', 1, out)
    with pytest.raises(ValueError, match=r"'depth' frame 0 does not fit a \(32, 41\) array"):
        stream.read_frame('depth', 0, np.empty((32, 41), np.float32))
    stream.abort()
