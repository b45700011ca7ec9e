"""The zip/npy layout and the copy-free writer (kinova_policy_ros.data.npz_format)."""

import ctypes
import errno
import io
from pathlib import Path
import subprocess
import time
import zipfile

from kinova_policy_ros.data import npz_format
from kinova_policy_ros.data.npz_format import dos_time, npy_header, write_npz
import numpy as np
import pytest


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        'frames': rng.integers(0, 255, (5, 64, 48, 3), dtype=np.uint8),  # > 1 MiB: parallel CRC
        'depth': rng.random((5, 64, 48)).astype(np.float32),
        'int64': np.arange(12, dtype=np.int64).reshape(3, 4),
        'scalar': np.asarray(7, dtype=np.int64),
        'empty': np.zeros((0, 7)),
        'names': np.asarray(['joint_1', 'joint_10']),
        'fortran': np.asfortranarray(rng.random((4, 3))),
        'big_endian': np.arange(5, dtype='>i4'),
        'big': rng.integers(0, 255, 3 << 20, dtype=np.uint8),
    }


def _assert_same(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with np.load(path) as z:
        assert sorted(z.files) == sorted(arrays)
        for key, want in arrays.items():
            got = z[key]
            assert got.dtype == want.dtype and got.shape == want.shape, key
            np.testing.assert_array_equal(got, want, err_msg=key)


def test_write_npz_matches_np_savez(tmp_path: Path) -> None:
    arrays = _arrays()
    ours, theirs = tmp_path / 'ours.npz', tmp_path / 'theirs.npz'
    with open(ours, 'wb') as f:
        write_npz(f, arrays)
    np.savez(theirs, **arrays)
    _assert_same(ours, arrays)
    with zipfile.ZipFile(ours) as z:
        assert z.testzip() is None  # every member's CRC-32 verified
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_STORED}
    # the same member bytes as numpy's own writer
    with zipfile.ZipFile(ours) as a, zipfile.ZipFile(theirs) as b:
        for name in b.namelist():
            assert a.read(name) == b.read(name), name
    if subprocess.run(['which', 'unzip'], capture_output=True).returncode == 0:
        proc = subprocess.run(['unzip', '-t', str(ours)], capture_output=True, text=True)
        assert proc.returncode == 0 and 'No errors detected' in proc.stdout, proc.stdout


def test_write_npz_crc_detects_corruption(tmp_path: Path) -> None:
    path = tmp_path / 'x.npz'
    with open(path, 'wb') as f:
        write_npz(f, {'a': np.arange(1000, dtype=np.int64)})
    data = bytearray(path.read_bytes())
    data[400] ^= 0xFF  # inside the array data
    path.write_bytes(bytes(data))
    with zipfile.ZipFile(path) as z:
        assert z.testzip() == 'a.npy'


def test_write_npz_refuses_object_arrays(tmp_path: Path) -> None:
    with open(tmp_path / 'x.npz', 'wb') as f, pytest.raises(TypeError, match='obj: object'):
        write_npz(f, {'obj': np.asarray([{}, None], dtype=object)})


def _failing_fallocate(code: int):
    def fallocate(fd: int, mode: int, offset: int, size: int) -> int:
        ctypes.set_errno(code)
        return -1

    return fallocate


def test_preallocate_reserves_the_file(tmp_path: Path) -> None:
    with open(tmp_path / 'f', 'wb') as f:
        done = npz_format.preallocate(f.fileno(), 1 << 20)
    # ext4, xfs, btrfs, tmpfs support it; elsewhere it is skipped and the file stays empty
    assert (tmp_path / 'f').stat().st_size == ((1 << 20) if done else 0)


def test_preallocate_skips_nothing_to_reserve(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(npz_format, '_FALLOCATE', lambda *args: calls.append(args) or 0)
    assert npz_format.preallocate(3, 0) is False
    assert calls == []
    assert npz_format.preallocate(3, 10) is True
    assert calls == [(3, 0, 0, 10)]


def test_preallocate_raises_on_a_full_disk(monkeypatch) -> None:
    monkeypatch.setattr(npz_format, '_FALLOCATE', _failing_fallocate(errno.ENOSPC))
    with pytest.raises(OSError, match='No space left on device'):
        npz_format.preallocate(0, 10)


def test_npy_header_is_what_np_save_writes() -> None:
    for arr in (np.zeros((3, 4), np.float32), np.asfortranarray(np.ones((2, 5))), np.arange(3)):
        buf = io.BytesIO()
        np.save(buf, arr)
        head = npy_header(arr)
        assert buf.getvalue()[: len(head)] == head
        assert len(head) % 64 == 0  # numpy aligns the data


def test_dos_time_fields() -> None:
    when = time.mktime((2024, 5, 17, 13, 45, 31, 0, 0, -1))
    clock, date = dos_time(when)
    assert (date >> 9, (date >> 5) & 0xF, date & 0x1F) == (2024 - 1980, 5, 17)
    assert (clock >> 11, (clock >> 5) & 0x3F, (clock & 0x1F) * 2) == (13, 45, 30)
    _, before_1980 = dos_time(0.0)  # the epoch is before zip's first year: clamped
    assert before_1980 >> 9 == 0


def test_write_npz_appends_after_members_already_written(tmp_path: Path) -> None:
    path = tmp_path / 'x.npz'
    with open(path, 'wb') as f:
        write_npz(f, {'a': np.arange(4)})
    with zipfile.ZipFile(path) as z:
        (info,) = z.infolist()
    end = path.read_bytes().index(b'PK\x01\x02')  # the central directory starts here
    with open(path, 'r+b') as f:
        f.seek(end)
        f.truncate()
        entry = (b'a.npy', info.CRC, info.file_size, info.header_offset)
        write_npz(f, {'b': np.ones(2)}, entries=[entry])
    _assert_same(path, {'a': np.arange(4), 'b': np.ones(2)})
    with zipfile.ZipFile(path) as z:
        assert z.namelist() == ['a.npy', 'b.npy'] and z.testzip() is None
