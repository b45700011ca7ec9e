"""
The streaming pass of the bag converter: decoded frames, depth matching, joints, TF, CameraInfo.

:class:`FrameCollector` receives the bag's messages in order (``add_rgb``, ``add_depth``,
``add_joint_state``, ``add_tf``). Output frames have slots in preallocated ``[capacity, H, W, 3]``
and ``[capacity, H, W]`` arrays (capacity = the RGB message count of the bag index). RGB frames
are decoded straight into their slots. Each depth frame is decoded once and stays a referenced
*candidate* of the frames it is nearest to until a later depth stamp proves it final, so it is
copied at most once per frame:

* without a stream (compressed output, split episodes) it is decoded into the slot of the frame
  it completes and copied into the slots of other frames it is nearest to;
* with ``stream_to`` set, final frames go to a
  :class:`~kinova_policy_ros.data.npz_writer.FrameStream`
  that writes them into the output file on a second thread while reading goes on, depth from the
  decoded array itself: the depth slots are never touched, so memory holds a few depth frames in
  flight rather than the episode's, and the conversion does not fault in ~1.2 MB of fresh pages
  per 640x480 frame. They are filled only when the streamed file is not the output after all
  (frames dropped): :meth:`FrameCollector.depth_to_memory` reads them back from it.
"""

from __future__ import annotations

from typing import Any, TYPE_CHECKING

from kinova_policy_ros.bag.options import ConvertOptions
from kinova_policy_ros.bag.reader import header_stamp_ns
from kinova_policy_ros.bag.sync import JointTrack, TfBuffer
from kinova_policy_ros.core import image_codec
from kinova_policy_ros.core.errors import BagError, DecodeError, SchemaError
from kinova_policy_ros.core.stamps import stamp_to_ns
from kinova_policy_ros.data.npz_writer import FrameStream
from kinova_policy_ros.data.preprocess import fit_stream
from kinova_policy_ros.data.schema import open_frame_stream
import numpy as np

if TYPE_CHECKING:
    from pathlib import Path


__all__ = ['FrameCollector', 'available_memory']


def _resize(img: np.ndarray, hw: tuple[int, int], nearest: bool) -> np.ndarray:
    """
    Fit a decoded frame to the output size ``hw`` (:func:`~.preprocess.fit_stream`).

    Each stream at its own size: the centred box of the aspect ratio of ``hw``, then colour by
    pixel area (bilinear when enlarging) and depth (``nearest``) by nearest neighbour. A frame of
    the output size already is returned as it is (no copy).
    """
    if img.shape[:2] == tuple(hw):
        return img
    return fit_stream(img, hw, 'depth' if nearest else 'rgb', resample='area_nearest')


def available_memory() -> int | None:
    """Return the bytes of memory available to new allocations (Linux MemAvailable), or None."""
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class FrameCollector:
    """State of one streaming pass: output frames, depth matching, joints, TF, CameraInfo."""

    def __init__(
        self, bag: str, opts: ConvertOptions, rgb_capacity: int, stream_to: Path | None = None
    ) -> None:
        self.bag, self.opts, self.capacity = bag, opts, rgb_capacity
        # Frames are streamed into the output file while the bag is read when the output is one
        # uncompressed file; _finish keeps the stream when every RGB frame was kept (the usual
        # case) and otherwise deletes it and writes the kept frames the ordinary way.
        self.stream_to = stream_to
        self.stream: FrameStream | None = None
        self.rgb: np.ndarray | None = None
        # depth frames streamed from their own decoded arrays: their self.depth slots are not
        # filled unless the stream is dropped (depth_to_memory)
        self.depth_in_file: list[int] = []
        self._no_depth: np.ndarray | None = None
        self.depth: np.ndarray | None = None
        self.hw: tuple[int, int] | None = None
        self.native_hw: tuple[int, int] | None = None
        self.depth_native_hw: tuple[int, int] | None = None
        self.stamps: list[int] = []
        self.depth_dt = np.zeros(0)
        self.pending: list[int] = []  # frames whose nearest depth may still come
        self.candidate: dict[int, np.ndarray] = {}  # pending frame -> nearest depth so far
        self.last_depth: np.ndarray | None = None
        self.last_depth_stamp: int | None = None
        self.depth_count = 0
        self.encodings: dict[str, str] = {}
        self.stamp_fallbacks = {'rgb': 0, 'depth': 0, 'joint_states': 0}
        self.duplicates = 0
        self.joints = JointTrack(
            tuple(opts.joint_names), where=f'{bag}: topic {opts.joint_states_topic!r}'
        )
        self.tf = TfBuffer()
        self.camera_info: Any = None
        self._last_stamp: dict[str, int] = {}

    def stamp(self, msg: Any, bag_ns: int, key: str, topic: str) -> int:
        stamp = bag_ns
        if self.opts.stamp == 'header':
            stamp = header_stamp_ns(msg)
            if stamp == 0:
                stamp = bag_ns
                self.stamp_fallbacks[key] += 1
        prev = self._last_stamp.get(key)
        if prev is not None and stamp < prev:
            raise BagError(
                f'{self.bag}: topic {topic!r}: stamps are not monotonic '
                f'({prev} ns then {stamp} ns); try --stamp bag'
            )
        self._last_stamp[key] = stamp
        return stamp

    def _decode(
        self, msg: Any, topic: str, index: int, depth: bool, out: np.ndarray | None = None
    ) -> np.ndarray:
        try:
            if out is not None:  # raw Image into a frame slot
                if depth:
                    return image_codec.decode_depth(msg, out=out)
                return image_codec.decode_rgb(msg, out=out)
            if depth:
                return image_codec.decode_depth_message(msg)
            return image_codec.decode_rgb_message(msg)
        except DecodeError as err:
            raise BagError(f'{self.bag}: topic {topic!r} message {index}: {err}') from err

    def add_rgb(self, msg: Any, bag_ns: int) -> None:
        topic = self.opts.rgb_topic
        stamp = self.stamp(msg, bag_ns, 'rgb', topic)
        if self.stamps and stamp == self.stamps[-1]:
            self.duplicates += 1
            return
        self.encodings.setdefault('rgb', str(getattr(msg, 'encoding', getattr(msg, 'format', ''))))
        i = len(self.stamps)
        if self.rgb is not None and i < self.capacity and self._fits_slot(msg):
            # same size as the output: decode straight into the frame buffer (no extra copy)
            self._decode(msg, topic, i + self.duplicates, depth=False, out=self.rgb[i])
            self._added_rgb(i, stamp)
            return
        img = self._decode(msg, topic, i + self.duplicates, depth=False)
        if self.rgb is None:
            self.native_hw = (img.shape[0], img.shape[1])
            self.hw = self.opts.resize or self.native_hw
            self._check_memory(self.hw)
            self.rgb = np.empty((self.capacity, *self.hw, 3), np.uint8)
            self.depth = np.empty((self.capacity, *self.hw), np.float32)
            self.depth_dt = np.full(self.capacity, np.inf)
            if self.stream_to is not None:
                sources = {'rgb': self.rgb, 'depth': self.depth}
                self.stream = open_frame_stream(self.stream_to, sources)
        elif img.shape[:2] != self.native_hw:
            raise BagError(
                f'{self.bag}: topic {topic!r}: image size changed from {self.native_hw} to '
                f'{img.shape[:2]} at message {len(self.stamps)}'
            )
        if i >= self.capacity:
            raise BagError(f'{self.bag}: topic {topic!r}: more messages than the bag index says')
        assert self.hw is not None and self.rgb is not None
        self.rgb[i] = _resize(img, self.hw, nearest=False)
        self._added_rgb(i, stamp)

    def depth_to_memory(self) -> None:
        """
        Read the depth frames streamed from their own arrays back into their slots.

        Needed, before the stream is deleted, when the streamed file is not the output (frames
        dropped): only then is ``self.depth`` used for more than its shape.
        """
        if self.stream is None:
            return
        assert self.depth is not None
        try:
            for i in self.depth_in_file:
                self.stream.read_frame('depth', i, self.depth[i])
        except OSError as err:
            raise SchemaError(
                f'{self.stream_to}: cannot read back streamed frames: {err}'
            ) from err
        self.depth_in_file = []

    def _check_memory(self, hw: tuple[int, int]) -> None:
        """
        Refuse an episode whose frames cannot be held in memory, before decoding it.

        Held are the RGB frames and, unless depth is streamed into the output file (one
        uncompressed episode), the depth frames: 2.1 MB per 640x480 frame, 38 GB for ten minutes
        at 30 Hz. Running out of memory half-way would be a kill without a message.
        """
        per_frame = hw[0] * hw[1] * (3 if self.stream_to is not None else 3 + 4)
        need = self.capacity * per_frame
        have = available_memory()
        if have is not None and need > have:
            hint = '--resize, or record shorter bags (ros2 bag record --max-bag-duration)'
            if self.stream_to is None and self.opts.split_on_gap_s is None:
                hint = f'--no-compress (depth then goes to the file as it is read), {hint}'
            raise BagError(
                f'{self.bag}: the episode needs {need / 1e9:.1f} GB of memory for its frames '
                f'({self.capacity} frames of {hw[0]}x{hw[1]}), {have / 1e9:.1f} GB are '
                f'available; convert with {hint}'
            )

    def _fits_slot(self, msg: Any) -> bool:
        """Whether ``msg`` is a raw Image of exactly the output size (decodable in place)."""
        if self.hw is None or image_codec.is_compressed(msg) or self.hw != self.native_hw:
            return False
        return (int(msg.height), int(msg.width)) == self.hw

    def _depth_slot(self, msg: Any, stamp: int) -> int | None:
        """
        Return the pending frame this depth message completes (to decode into), if any.

        Only a frame it completes (stamp at or after the frame's) qualifies, so the slot never
        changes afterwards and can serve as ``last_depth`` for later frames.
        """
        if self.depth is None or self.stream is not None or not self._fits_slot(msg):
            return None  # (a streamed frame goes to the file from its own decoded array)
        for i in self.pending:
            dt = abs(stamp - self.stamps[i]) * 1e-9
            if stamp >= self.stamps[i] and dt < self.depth_dt[i]:
                return i
        return None

    def _added_rgb(self, i: int, stamp: int) -> None:
        if self.stream is not None:
            self._put('rgb', i)
        self.stamps.append(stamp)
        if self.last_depth_stamp is not None:
            self._assign(i, self.last_depth, self.last_depth_stamp)
        self.pending.append(i)

    def _assign(self, i: int, depth: np.ndarray | None, depth_stamp: int) -> None:
        """Make ``depth`` the candidate of pending frame ``i`` if it is the nearest so far."""
        dt = abs(depth_stamp - self.stamps[i]) * 1e-9
        if depth is None or dt >= self.depth_dt[i]:
            return
        self.candidate[i] = depth  # referenced, copied once when final (_settle)
        self.depth_dt[i] = dt

    def _settle(self, i: int) -> None:
        """
        Frame ``i``'s depth is final: stream its candidate, or copy it into the slot.

        Streamed, the candidate array itself is written (no copy into ``self.depth``; a frame
        without any depth gets zeros and is dropped later).
        """
        depth = self.candidate.pop(i, None)
        assert self.hw is not None and self.depth is not None
        if self.stream is None:
            if depth is not None:
                self.depth[i] = _resize(depth, self.hw, nearest=True)
            return
        if depth is None:
            if self._no_depth is None:
                self._no_depth = np.zeros(self.hw, np.float32)
            frame = self._no_depth
        else:
            frame = np.ascontiguousarray(_resize(depth, self.hw, nearest=True))
        self._put('depth', i, frame)
        self.depth_in_file.append(i)

    def _put(self, key: str, i: int, frame: np.ndarray | None = None) -> None:
        assert self.stream is not None
        try:
            self.stream.put(key, i, frame)
        except OSError as err:  # the writer thread failed (e.g. disk full)
            raise SchemaError(f'{self.stream_to}: cannot write episode: {err}') from err

    def settle_pending(self) -> None:
        """End of the bag: the depth of every frame still pending is final."""
        for i in self.pending:
            self._settle(i)
        self.pending = []

    def add_depth(self, msg: Any, bag_ns: int) -> None:
        topic = self.opts.depth_topic
        stamp = self.stamp(msg, bag_ns, 'depth', topic)
        self.encodings.setdefault(
            'depth', str(getattr(msg, 'encoding', getattr(msg, 'format', '')))
        )
        slot = self._depth_slot(msg, stamp)
        if slot is None:
            depth = self._decode(msg, topic, self.depth_count, depth=True)
        else:  # straight into the frame it completes; _assign then copies it to other frames
            assert self.depth is not None
            depth = self._decode(msg, topic, self.depth_count, True, out=self.depth[slot])
            self.depth_dt[slot] = abs(stamp - self.stamps[slot]) * 1e-9
            self.candidate.pop(slot, None)  # already in place
        self.depth_count += 1
        self.depth_native_hw = (depth.shape[0], depth.shape[1])
        still: list[int] = []
        for i in self.pending:
            self._assign(i, depth, stamp)
            if stamp < self.stamps[i]:
                still.append(i)  # a later depth frame may be nearer
            else:  # final: later depth stamps are farther
                self._settle(i)
        self.pending = still
        self.last_depth, self.last_depth_stamp = depth, stamp

    def end_stream(self, keep: bool) -> FrameStream | None:
        """
        Return the stream (every frame settled), or delete it (``keep`` false).

        Deleting after the stream was saved is a no-op, so ``convert_bag`` always ends with it.
        """
        stream = self.stream
        if stream is None:
            return None
        if not keep:
            self.stream = None
            stream.abort()
            return None
        return stream

    def add_joint_state(self, msg: Any, bag_ns: int) -> None:
        stamp = self.stamp(msg, bag_ns, 'joint_states', self.opts.joint_states_topic)
        self.joints.add(stamp, msg.name, msg.position, msg.velocity)

    def add_tf(self, msg: Any, static: bool) -> None:
        for tr in msg.transforms:
            t, r = tr.transform.translation, tr.transform.rotation
            self.tf.add(
                tr.header.frame_id,
                tr.child_frame_id,
                stamp_to_ns(tr.header.stamp),
                (float(t.x), float(t.y), float(t.z)),
                (float(r.x), float(r.y), float(r.z), float(r.w)),
                static=static,
            )
