"""
Uncompressed ``.npz`` writing without copies, for :func:`~.schema.save_episode`.

``np.savez`` pushes every array through ``zipfile``: it copies the data in 16 MiB ``tobytes``
chunks and computes the zip CRC-32 and the file write one after the other on one thread. An
episode of 640x480 RGB-D frames is 2.1 MB per frame, so that is most of a conversion. This
writer produces the same format (a zip of ``.npy`` members, stored, with Zip64 fields like
numpy's, readable by ``np.load`` and any unzip) but

* writes each array's buffer straight from memory (no ``tobytes`` copy), and
* computes the CRC-32 (zlib-ng's SIMD implementation when installed, ~7x zlib's) on a second
  thread while the file write of the same buffer runs, then patches the local header.

:class:`FrameStream` goes further for the converter: the per-frame arrays (``rgb``, ``depth``)
are written frame by frame *while the bag is still being read*, by a background thread, at
offsets fixed in advance from the expected frame count (the file's blocks reserved up front);
at the end only the small arrays, the CRCs and the zip directory are left to write.

The schema module owns validation and the atomic rename; this module only lays out bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
import ctypes
import errno
import io
import os
from pathlib import Path
import queue
import struct
import threading
import time
from typing import Any, BinaryIO

import numpy as np

try:  # SIMD CRC-32 (same checksum); plain zlib where the wheel is missing
    from zlib_ng.zlib_ng import crc32
except ImportError:  # pragma: no cover - exercised only without zlib-ng
    from zlib import crc32

# zip record signatures and fixed values (APPNOTE.TXT 4.3)
_LOCAL_SIG = 0x04034B50
_CENTRAL_SIG = 0x02014B50
_ZIP64_END_SIG = 0x06064B50
_ZIP64_LOCATOR_SIG = 0x07064B50
_END_SIG = 0x06054B50
_VERSION = 45  # 4.5: Zip64
_FFFF32 = 0xFFFFFFFF
_ZIP64_EXTRA_ID = 0x0001
_STORED = 0
_LOCAL_CRC_OFFSET = 14  # the CRC-32 field of a local file header, patched after the data
# below this many bytes a second thread costs more than it saves
_PARALLEL_CRC_MIN = 1 << 20
# frames queued for the writer thread at most (a 640x480 RGB-D frame is 2.1 MB)
_MAX_QUEUED = 64
_IOV_MAX = 512  # buffers per pwritev (Linux allows 1024)
# fallocate(2) failures that mean "not supported here" (the file is then written without it)
_NO_FALLOCATE = {errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL, errno.EBADF}


def _dos_time(now: float) -> tuple[int, int]:
    t = time.localtime(now)
    date = ((max(t.tm_year, 1980) - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday
    clock = (t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2)
    return clock, date


def _libc_fallocate() -> Any:
    try:
        func = ctypes.CDLL(None, use_errno=True).fallocate
    except (AttributeError, OSError):  # not Linux
        return None
    func.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
    func.restype = ctypes.c_int
    return func


_FALLOCATE = _libc_fallocate()


def preallocate(fd: int, size: int) -> bool:
    """
    Reserve ``size`` bytes of disk for the file ``fd`` (Linux ``fallocate(2)``, mode 0).

    Writing into reserved blocks is cheaper than extending the file as it goes (ext4: ~0.04 s
    instead of ~0.06 s for 320 MB), and a full disk fails here, before any frame is decoded.
    Return whether it was done; where the call or the file system does not support it (glibc's
    ``posix_fallocate`` would emulate it by writing every block), nothing happens. A full disk
    raises :class:`OSError` (``ENOSPC``).
    """
    if _FALLOCATE is None or size <= 0:
        return False
    if _FALLOCATE(fd, 0, 0, size) == 0:
        return True
    err = ctypes.get_errno()
    if err in _NO_FALLOCATE:
        return False
    raise OSError(err, os.strerror(err))


def _npy_header(arr: np.ndarray) -> bytes:
    """Return the ``.npy`` header numpy would write for ``arr``."""
    buf = io.BytesIO()
    header = np.lib.format.header_data_from_array_1_0(arr)
    try:
        np.lib.format.write_array_header_1_0(buf, header)
    except ValueError:  # header longer than 65535 bytes (huge shapes): version 2.0
        buf = io.BytesIO()
        np.lib.format.write_array_header_2_0(buf, header)
    return buf.getvalue()


def _local_header(name: bytes, crc: int, size: int, clock: int, date: int) -> bytes:
    # sizes live in the Zip64 extra field (always present, like numpy's force_zip64)
    extra = struct.pack('<HHQQ', _ZIP64_EXTRA_ID, 16, size, size)
    fixed = struct.pack(
        '<IHHHHHIIIHH',
        _LOCAL_SIG,
        _VERSION,
        0,  # flags
        _STORED,
        clock,
        date,
        crc,
        _FFFF32,
        _FFFF32,
        len(name),
        len(extra),
    )
    return fixed + name + extra


def _central_header(name: bytes, crc: int, size: int, offset: int, clock: int, date: int) -> bytes:
    extra = struct.pack('<HHQQQ', _ZIP64_EXTRA_ID, 24, size, size, offset)
    fixed = struct.pack(
        '<IHHHHHHIIIHHHHHII',
        _CENTRAL_SIG,
        _VERSION | (3 << 8),  # made by: Unix
        _VERSION,
        0,  # flags
        _STORED,
        clock,
        date,
        crc,
        _FFFF32,
        _FFFF32,
        len(name),
        len(extra),
        0,  # comment length
        0,  # disk number start
        0,  # internal attributes
        0o100644 << 16,  # external attributes: regular file, rw-r--r--
        _FFFF32,
    )
    return fixed + name + extra


def _end_records(count: int, cd_offset: int, cd_size: int) -> bytes:
    zip64_end_offset = cd_offset + cd_size
    zip64_end = struct.pack(
        '<IQHHIIQQQQ',
        _ZIP64_END_SIG,
        44,  # size of the rest of this record
        _VERSION | (3 << 8),
        _VERSION,
        0,
        0,
        count,
        count,
        cd_size,
        cd_offset,
    )
    locator = struct.pack('<IIQI', _ZIP64_LOCATOR_SIG, 0, zip64_end_offset, 1)
    end = struct.pack(
        '<IHHHHIIH',
        _END_SIG,
        0,
        0,
        min(count, 0xFFFF),
        min(count, 0xFFFF),
        min(cd_size, _FFFF32),
        min(cd_offset, _FFFF32),
        0,
    )
    return zip64_end + locator + end


def write_npz(
    f: BinaryIO,
    arrays: Mapping[str, np.ndarray],
    entries: list[tuple[bytes, int, int, int]] | None = None,
    when: float | None = None,
) -> None:
    """
    Write ``arrays`` to the open binary file ``f`` as an uncompressed ``.npz``.

    ``f`` must be seekable (headers are patched with the CRC after the data). Object arrays are
    not supported (the schema has none).

    :param entries: members already in ``f`` before its current position (name, CRC, size,
        local-header offset), listed in the directory first.
    :param when: modification time of the members (default: now).
    """
    clock, date = _dos_time(time.time() if when is None else when)
    entries = list(entries or [])  # name, crc, size, local header offset
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix='npz-crc') as pool:
        for key, value in arrays.items():
            arr = np.asarray(value)
            if arr.dtype.hasobject:
                raise TypeError(f'{key}: object arrays cannot be written to an npz episode')
            if not (arr.flags.c_contiguous or arr.flags.f_contiguous):
                arr = np.ascontiguousarray(arr)
            name = f'{key}.npy'.encode()
            head = _npy_header(arr)  # fortran_order for F-contiguous arrays, as numpy does
            memory = arr if arr.flags.c_contiguous else arr.T  # the bytes in memory order
            data = memory.reshape(-1).view(np.uint8).data if arr.size else memoryview(b'')
            size = len(head) + data.nbytes
            offset = f.tell()
            f.write(_local_header(name, 0, size, clock, date))
            crc = crc32(head)
            if data.nbytes >= _PARALLEL_CRC_MIN:
                pending = pool.submit(crc32, data, crc)
                f.write(head)
                f.write(data)
                crc = pending.result()
            else:
                crc = crc32(data, crc)
                f.write(head)
                f.write(data)
            end = f.tell()
            f.seek(offset + _LOCAL_CRC_OFFSET)
            f.write(struct.pack('<I', crc))
            f.seek(end)
            entries.append((name, crc, size, offset))
    _write_directory(f, entries, clock, date)


def _write_directory(
    f: BinaryIO, entries: list[tuple[bytes, int, int, int]], clock: int, date: int
) -> None:
    """Append the central directory and the end records at the current position of ``f``."""
    cd_offset = f.tell()
    central = b''.join(
        _central_header(name, crc, size, offset, clock, date)
        for name, crc, size, offset in entries
    )
    f.write(central)
    f.write(_end_records(len(entries), cd_offset, len(central)))


class FrameStream:
    """
    Per-frame arrays of an uncompressed npz, written while they are filled.

    ``sources`` maps member names to in-memory arrays of ``capacity`` frames (first axis). The
    file (``tmp``, created here; it must not exist) starts with one member per source, laid out
    for all ``capacity`` frames.
    :meth:`put` marks frame ``i`` of a source final (frames of one source in index order, each
    once); a background thread writes final frames at their offsets and extends the member's
    CRC. :meth:`finish` appends the other arrays and the zip directory once every frame
    of every source was put; :meth:`abort` deletes the file.

    Frames are written without copies, from the source array or from the array given to
    :meth:`put` (e.g. a freshly decoded frame, which then never has to be copied into the
    source): a frame must not change after :meth:`put` until :meth:`finish` or :meth:`abort`
    returned. ``checks`` maps members to a function that returns what is wrong with some of its
    frames (or None); the writer thread applies it to everything it writes, and :attr:`problems`
    holds the first problem of each member.
    """

    def __init__(
        self,
        tmp: str | os.PathLike[str],
        sources: Mapping[str, np.ndarray],
        checks: Mapping[str, Callable[[np.ndarray], str | None]] | None = None,
    ) -> None:
        self.path = Path(tmp)
        capacities = {int(a.shape[0]) for a in sources.values()}
        if len(capacities) != 1:
            raise ValueError(f'{tmp}: sources differ in frame count: {capacities}')
        self.capacity = capacities.pop()
        self._when = time.time()
        clock, date = _dos_time(self._when)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        self._members: dict[str, dict] = {}
        offset = 0
        try:
            for key, source in sources.items():
                if not source.flags.c_contiguous:
                    raise ValueError(f'{tmp}: source {key!r} is not C-contiguous')
                head = _npy_header(source)
                name = f'{key}.npy'.encode()
                size = len(head) + source.nbytes
                local = _local_header(name, 0, size, clock, date)
                self._members[key] = {
                    'name': name,
                    'source': source,
                    'offset': offset,
                    'data': offset + len(local) + len(head),
                    'frame_bytes': source.nbytes // max(self.capacity, 1),
                    'size': size,
                    'crc': crc32(head),
                    'next': 0,  # next frame index put() expects
                }
                os.pwrite(self._fd, local + head, offset)
                offset += len(local) + size
            preallocate(self._fd, offset)
        except BaseException:
            os.close(self._fd)
            self.path.unlink(missing_ok=True)
            raise
        self._end = offset
        # bounded: frames given to put() stay alive until written, so a slow disk blocks the
        # producer instead of filling the memory
        self._queue: queue.Queue = queue.Queue(maxsize=_MAX_QUEUED)
        self._error: BaseException | None = None
        self._checks = dict(checks or {})
        self._problems: dict[str, str] = {}
        self._thread = threading.Thread(target=self._run, name='npz-frames', daemon=True)
        self._thread.start()

    @property
    def keys(self) -> tuple[str, ...]:
        """Return the names of the per-frame arrays this stream holds."""
        return tuple(self._members)

    @property
    def problems(self) -> dict[str, str]:
        """Return the first problem ``checks`` found in each member (after :meth:`wait`)."""
        return dict(self._problems)

    def shape(self, key: str) -> tuple[int, ...]:
        """Shape of the member ``key``."""
        return tuple(self._members[key]['source'].shape)

    def _run(self) -> None:
        # Everything queued so far is taken at once and each key's frames are written in runs
        # of consecutive frames (one pwrite for source frames, contiguous in memory and in the
        # file; one pwritev for frames given to put()): the thread needs the GIL a few times per
        # batch rather than per frame, and every time it does the reading thread hands it over.
        done = False
        while not done:
            batch: list[tuple[str, int, np.ndarray | None]] = []
            item = self._queue.get()
            while True:
                if item is None:
                    done = True
                else:
                    batch.append(item)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if self._error is not None or not batch:
                continue  # after a failure just drain; put()/finish() raise the error
            try:
                for key, first, stop, frames in _runs(batch):
                    self._write_run(key, first, stop, frames)
            except BaseException as err:  # reported to the producer thread
                self._error = err

    def _write_run(
        self, key: str, first: int, stop: int, frames: list[np.ndarray] | None
    ) -> None:
        m = self._members[key]
        parts = [m['source'][first:stop]] if frames is None else frames
        views = [p.reshape(-1).view(np.uint8).data for p in parts]
        crc = m['crc']
        for view in views:
            crc = crc32(view, crc)
        m['crc'] = crc
        _pwrite_all(self._fd, views, m['data'] + first * m['frame_bytes'])
        check = self._checks.get(key)
        if check is None or key in self._problems:
            return
        for k, part in enumerate(parts):
            problem = check(part)
            if problem is not None:
                if frames is not None:
                    where = f'frame {first + k}'
                else:
                    where = f'frame {first}' if stop == first + 1 else f'frames {first}-{stop - 1}'
                self._problems[key] = f'{problem} (in {where})'
                return

    def put(self, key: str, i: int, frame: np.ndarray | None = None) -> None:
        """
        Mark frame ``i`` of ``key`` (the next one in order) final: it is queued for writing.

        :param frame: write this C-contiguous array (shape and dtype of one frame of the source)
            instead of ``source[i]``, which is then left as it is.
        """
        if self._error is not None:
            raise OSError(f'{self.path}: writing {key!r} failed: {self._error}') from self._error
        m = self._members[key]
        if i != m['next'] or i >= self.capacity:
            raise ValueError(f'{self.path}: {key!r} frame {i} out of order (expected {m["next"]})')
        if frame is not None:
            source = m['source']
            if (
                frame.shape != source.shape[1:]
                or frame.dtype != source.dtype
                or not frame.flags.c_contiguous
            ):
                raise ValueError(
                    f'{self.path}: {key!r} frame {i} is a {frame.dtype} {frame.shape} array '
                    f'(C-contiguous: {frame.flags.c_contiguous}); a frame is {source.dtype} '
                    f'{source.shape[1:]}, C-contiguous'
                )
        m['next'] = i + 1
        self._queue.put((key, i, frame))

    def _join(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def wait(self) -> None:
        """Wait until every frame put so far is written; raise the writer's error if it failed."""
        self._join()
        if self._error is not None:
            raise OSError(f'{self.path}: writing frames failed: {self._error}') from self._error

    def read_frame(self, key: str, i: int, out: np.ndarray) -> None:
        """Read frame ``i`` of ``key`` back from the file into ``out`` (after it was written)."""
        m = self._members[key]
        if i >= m['next']:
            raise ValueError(f'{self.path}: {key!r} frame {i} was not put')
        if out.nbytes != m['frame_bytes'] or not out.flags.c_contiguous:
            raise ValueError(f'{self.path}: {key!r} frame {i} does not fit a {out.shape} array')
        self.wait()
        buf = out.reshape(-1).view(np.uint8).data
        pos = m['data'] + i * m['frame_bytes']
        while buf.nbytes:
            n = os.preadv(self._fd, [buf], pos)
            if n == 0:
                raise OSError(f'{self.path}: {key!r} frame {i}: file ends early')
            buf, pos = buf[n:], pos + n

    def finish(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Wait for the frames, then append ``arrays`` (the other members) and the directory."""
        self.wait()
        # without a writer error, every frame put was written
        short = {k: m['next'] for k, m in self._members.items() if m['next'] != self.capacity}
        if short:
            raise ValueError(
                f'{self.path}: frames put {short}; expected {self.capacity} of each of '
                f'{list(self._members)}'
            )
        entries = []
        for m in self._members.values():
            os.pwrite(self._fd, struct.pack('<I', m['crc']), m['offset'] + _LOCAL_CRC_OFFSET)
            entries.append((m['name'], m['crc'], m['size'], m['offset']))
        with os.fdopen(self._fd, 'wb', closefd=True) as f:
            self._fd = -1
            f.seek(self._end)
            write_npz(f, arrays, entries, self._when)

    def abort(self) -> None:
        """Stop writing and delete the file (safe to call more than once)."""
        self._join()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.path.unlink(missing_ok=True)


_Run = tuple[str, int, int, 'list[np.ndarray] | None']


def _pwrite_all(fd: int, views: list[memoryview], pos: int) -> None:
    """Write ``views`` back to back at ``pos`` (one ``pwritev`` call unless it writes less)."""
    while views:
        n = os.pwritev(fd, views[:_IOV_MAX], pos)
        pos += n
        while views and n >= views[0].nbytes:
            n -= views[0].nbytes
            views = views[1:]
        if views and n:
            views = [views[0][n:], *views[1:]]


def _runs(batch: list[tuple[str, int, np.ndarray | None]]) -> list[_Run]:
    """
    Group queued ``(key, index, frame)`` into ``(key, first, stop, frames)`` writes.

    Frames are grouped by key (each key's frames stay in order: its CRC runs through them in
    order), then consecutive frames of the source array (``frame`` None, ``frames`` None) or
    consecutive frames given to :meth:`FrameStream.put` (``frames`` lists them) form one run.
    """
    runs: list[_Run] = []
    for key in dict.fromkeys(k for k, _, _ in batch):
        for k, i, frame in batch:
            if k != key:
                continue
            last = runs[-1] if runs else None
            given = frame is not None
            if last and last[0] == key and last[2] == i and (last[3] is not None) == given:
                if frame is not None and last[3] is not None:
                    last[3].append(frame)
                runs[-1] = (key, last[1], i + 1, last[3])
            else:
                runs.append((key, i, i + 1, [frame] if frame is not None else None))
    return runs
