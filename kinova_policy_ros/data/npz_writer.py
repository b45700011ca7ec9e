"""
Uncompressed ``.npz`` writing without copies, for :func:`~.schema.save_episode`.

:func:`write_npz` (from :mod:`~.npz_format`, which owns the zip/npy layout) writes a whole
mapping of arrays. :class:`FrameStream` goes further for the converter: the per-frame arrays
(``rgb``, ``depth``) are written frame by frame *while the bag is still being read*, by a
background thread, at offsets fixed in advance from the expected frame count (the file's blocks
reserved up front); at the end only the small arrays, the CRCs and the zip directory are left to
write.

The schema module owns validation and the atomic rename; this module only lays out bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
import os
from pathlib import Path
import queue
import struct
import threading
import time
from typing import TypeAlias

from kinova_policy_ros.data.npz_format import (
    crc32,
    dos_time,
    LOCAL_CRC_OFFSET,
    local_header,
    npy_header,
    preallocate,
    write_npz,
    ZipEntry,
)
import numpy as np

__all__ = ['FrameStream', 'preallocate', 'write_npz']

# frames queued for the writer thread at most (a 640x480 RGB-D frame is 2.1 MB)
_MAX_QUEUED = 64
_IOV_MAX = 512  # buffers per pwritev (Linux allows 1024)

#: A frame marked final: member key, frame index, the array given to put() (None: the source's).
_Queued: TypeAlias = tuple[str, int, 'np.ndarray | None']
#: One write: member key, first and stop frame index, the frames given to put() (None: source).
_Run: TypeAlias = tuple[str, int, int, 'list[np.ndarray] | None']


@dataclass
class _Member:
    """Where one per-frame member lies in the file, and how far it is written."""

    name: bytes  # the zip member name, ``<key>.npy``
    source: np.ndarray  # the in-memory array of ``capacity`` frames
    offset: int  # of the local header
    data: int  # offset of frame 0's bytes
    frame_bytes: int
    size: int  # npy header + data
    crc: int  # CRC-32 of the header and the frames written so far
    next_frame: int = 0  # the frame index put() expects next


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
        clock, date = dos_time(self._when)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        self._members: dict[str, _Member] = {}
        offset = 0
        try:
            for key, source in sources.items():
                if not source.flags.c_contiguous:
                    raise ValueError(f'{tmp}: source {key!r} is not C-contiguous')
                head = npy_header(source)
                name = f'{key}.npy'.encode()
                size = len(head) + source.nbytes
                local = local_header(name, 0, size, clock, date)
                self._members[key] = _Member(
                    name=name,
                    source=source,
                    offset=offset,
                    data=offset + len(local) + len(head),
                    frame_bytes=source.nbytes // max(self.capacity, 1),
                    size=size,
                    crc=crc32(head),
                )
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
        self._queue: queue.Queue[_Queued | None] = queue.Queue(maxsize=_MAX_QUEUED)
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
        return tuple(self._members[key].source.shape)

    def _run(self) -> None:
        # Everything queued so far is taken at once and each key's frames are written in runs
        # of consecutive frames (one pwrite for source frames, contiguous in memory and in the
        # file; one pwritev for frames given to put()): the thread needs the GIL a few times per
        # batch rather than per frame, and every time it does the reading thread hands it over.
        done = False
        while not done:
            batch: list[_Queued] = []
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
        parts = [m.source[first:stop]] if frames is None else frames
        views = [p.reshape(-1).view(np.uint8).data for p in parts]
        crc = m.crc
        for view in views:
            crc = crc32(view, crc)
        m.crc = crc
        _pwrite_all(self._fd, views, m.data + first * m.frame_bytes)
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
        if i != m.next_frame or i >= self.capacity:
            raise ValueError(
                f'{self.path}: {key!r} frame {i} out of order (expected {m.next_frame})'
            )
        if frame is not None:
            source = m.source
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
        m.next_frame = i + 1
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
        if i >= m.next_frame:
            raise ValueError(f'{self.path}: {key!r} frame {i} was not put')
        if out.nbytes != m.frame_bytes or not out.flags.c_contiguous:
            raise ValueError(f'{self.path}: {key!r} frame {i} does not fit a {out.shape} array')
        self.wait()
        buf = out.reshape(-1).view(np.uint8).data
        pos = m.data + i * m.frame_bytes
        while buf.nbytes:
            n = os.preadv(self._fd, [buf], pos)
            if n == 0:
                raise OSError(f'{self.path}: {key!r} frame {i}: file ends early')
            buf, pos = buf[n:], pos + n

    def finish(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Wait for the frames, then append ``arrays`` (the other members) and the directory."""
        self.wait()
        # without a writer error, every frame put was written
        short = {
            k: m.next_frame for k, m in self._members.items() if m.next_frame != self.capacity
        }
        if short:
            raise ValueError(
                f'{self.path}: frames put {short}; expected {self.capacity} of each of '
                f'{list(self._members)}'
            )
        entries: list[ZipEntry] = []
        for m in self._members.values():
            os.pwrite(self._fd, struct.pack('<I', m.crc), m.offset + LOCAL_CRC_OFFSET)
            entries.append((m.name, m.crc, m.size, m.offset))
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


def _runs(batch: list[_Queued]) -> list[_Run]:
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
