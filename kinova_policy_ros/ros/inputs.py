"""
Inputs of the policy node: decode image and joint-state messages, keep the newest of each.

The subscription callbacks (executor thread) turn each message into a :class:`Sample` (the
receipt time and the decoded value, or the error that names the topic) and put it into the
:class:`InputBuffer`; the control thread takes the newest three and :meth:`InputBuffer.check`
says whether they make a valid, fresh observation.
"""

from collections.abc import Sequence
from dataclasses import dataclass
import threading
from typing import Generic, NamedTuple, TypeVar

from kinova_policy_ros.core import image_codec
from kinova_policy_ros.core.errors import DecodeError
from kinova_policy_ros.ros.diagnostics import INVALID, RUNNING, STALE, WAITING
import numpy as np
import numpy.typing as npt
from sensor_msgs.msg import CompressedImage, Image, JointState

__all__ = [
    'DepthArray',
    'FloatArray',
    'InputBuffer',
    'JointStateReader',
    'Observation',
    'RgbArray',
    'Sample',
    'Samples',
    'depth_sample',
    'rgb_sample',
]

RgbArray = npt.NDArray[np.uint8]
DepthArray = npt.NDArray[np.float32]
FloatArray = npt.NDArray[np.float64]
ArrayT_co = TypeVar('ArrayT_co', bound=npt.NDArray[np.generic], covariant=True)


@dataclass(frozen=True)
class Sample(Generic[ArrayT_co]):
    """The newest message of one input: receipt time, decoded value or the decode error."""

    stamp_ns: int = 0
    value: ArrayT_co | None = None
    error: str = ''


class Samples(NamedTuple):
    """The newest RGB, depth and joint-state samples, read together."""

    rgb: Sample[RgbArray]
    depth: Sample[DepthArray]
    joints: Sample[FloatArray]

    def each(self) -> tuple[Sample[npt.NDArray[np.generic]], ...]:
        """Return the three samples as one tuple type (RGB, depth, joints)."""
        return (self.rgb, self.depth, self.joints)


class Observation(NamedTuple):
    """One observation: RGB ``[H, W, 3]`` uint8, depth ``[H, W]`` m, joints ``[n]`` rad."""

    rgb: RgbArray
    depth: DepthArray
    q: FloatArray


def rgb_sample(msg: Image | CompressedImage, stamp_ns: int, topic: str) -> Sample[RgbArray]:
    """Decode an RGB ``Image`` or ``CompressedImage``; a bad message gives the error."""
    try:
        if isinstance(msg, CompressedImage):
            rgb = image_codec.decode_compressed_rgb(msg)
        else:
            rgb = image_codec.decode_rgb(msg)
    except DecodeError as err:
        return Sample(stamp_ns, None, f'{topic}: {err}')
    return Sample(stamp_ns, rgb, '')


def depth_sample(msg: Image, stamp_ns: int, topic: str) -> Sample[DepthArray]:
    """Decode a depth ``Image`` to metres, non-finite values as 0 (like the dataset)."""
    try:
        depth = image_codec.decode_depth(msg)
    except DecodeError as err:
        return Sample(stamp_ns, None, f'{topic}: {err}')
    if not np.all(np.isfinite(depth)):
        # The dataset stores 0 where depth is invalid: do the same online.
        depth = np.where(np.isfinite(depth), depth, np.float32(0.0)).astype(np.float32)
    return Sample(stamp_ns, depth, '')


class JointStateReader:
    """
    Pick the arm joints out of ``sensor_msgs/JointState`` in checkpoint order.

    ``robot_names[i]`` is the ``/joint_states`` name of checkpoint joint ``i``; other joints in
    the message (a gripper) are ignored. The index of the last name list is cached: a driver
    sends the same order every time.
    """

    def __init__(self, robot_names: Sequence[str], topic: str) -> None:
        self.robot_names = tuple(robot_names)
        self.topic = topic
        self._cached: tuple[tuple[str, ...], npt.NDArray[np.intp]] | None = None

    def index_for(self, names: tuple[str, ...]) -> npt.NDArray[np.intp]:
        """Return where each robot joint sits in ``names``; ValueError names missing or twice."""
        cached = self._cached
        if cached is not None and cached[0] == names:
            return cached[1]
        lookup = {n: i for i, n in enumerate(names)}
        missing = [n for n in self.robot_names if n not in lookup]
        if missing:
            raise ValueError(f'missing joints {missing} (message has {list(names)})')
        if len(lookup) != len(names):
            # An arm joint listed twice has two positions: neither can be trusted.
            twice = [n for n in self.robot_names if names.count(n) > 1]
            if twice:
                raise ValueError(f'duplicate joints {twice} (message has {list(names)})')
        index = np.array([lookup[n] for n in self.robot_names], dtype=np.intp)
        self._cached = (names, index)
        return index

    def sample(self, msg: JointState, stamp_ns: int) -> Sample[FloatArray]:
        """Return the measured positions (rad, checkpoint order) or the error naming the topic."""
        names = tuple(msg.name)
        try:
            index = self.index_for(names)
            positions = np.asarray(msg.position, dtype=np.float64)
            if positions.shape[0] != len(names):
                raise ValueError(f'{len(names)} names but {positions.shape[0]} positions')
            q = positions[index]
            bad = ~np.isfinite(q)
            if bad.any():
                raise ValueError(
                    'non-finite position for '
                    + ', '.join(n for n, b in zip(self.robot_names, bad) if b)
                )
        except ValueError as err:
            return Sample(stamp_ns, None, f'{self.topic}: {err}')
        return Sample(stamp_ns, q, '')


class InputBuffer:
    """
    The newest sample of each input and the pending reset request (thread-safe).

    :param labels: the topics of the RGB, depth and joint-state inputs (used in the details).
    """

    def __init__(self, labels: tuple[str, str, str]) -> None:
        self.labels = labels
        self._lock = threading.Lock()
        self._rgb: Sample[RgbArray] = Sample()
        self._depth: Sample[DepthArray] = Sample()
        self._joints: Sample[FloatArray] = Sample()
        self._reset_requested = False

    def put_rgb(self, sample: Sample[RgbArray]) -> None:
        """Replace the RGB sample."""
        with self._lock:
            self._rgb = sample

    def put_depth(self, sample: Sample[DepthArray]) -> None:
        """Replace the depth sample."""
        with self._lock:
            self._depth = sample

    def put_joints(self, sample: Sample[FloatArray]) -> None:
        """Replace the joint-state sample."""
        with self._lock:
            self._joints = sample

    def request_reset(self) -> None:
        """Ask for a reset; forget the camera frames received so far (not the joint state)."""
        with self._lock:
            self._reset_requested = True
            # The first observation after a reset pads the window (and is the anchor frame of a
            # data.anchor_frame model): it must not be a frame taken before the reset.
            self._rgb = Sample()
            self._depth = Sample()

    def take_reset_request(self) -> bool:
        """Return whether a reset was requested since the last call (and clear the request)."""
        with self._lock:
            requested, self._reset_requested = self._reset_requested, False
        return requested

    def samples(self) -> Samples:
        """Return the newest samples."""
        with self._lock:
            return Samples(self._rgb, self._depth, self._joints)

    def check(self, now_ns: int, max_age_s: float) -> tuple[str, str, Observation | None]:
        """
        Say whether the newest samples make an observation at ``now_ns``.

        :return: ``(state, detail, observation)``: :data:`RUNNING`, no detail and the
            observation, or :data:`INVALID` (a decode error), :data:`WAITING` (an input never
            received, or not since the reset) or :data:`STALE` (older than ``max_age_s``) with
            the topics in the detail and no observation.
        """
        samples = self.samples()
        errors = [s.error for s in samples.each() if s.error]
        if errors:
            return INVALID, '; '.join(errors), None
        # (a received sample holds a value or an error: no value means nothing received)
        never = [
            lab
            for lab, s in zip(self.labels, samples.each())
            if s.stamp_ns == 0 or s.value is None
        ]
        obs = _observation(samples)
        if never or obs is None:
            return WAITING, f'no message yet (or since the reset) on {", ".join(never)}', None
        stale = [
            f'{lab} ({(now_ns - s.stamp_ns) * 1e-9:.3f} s old)'
            for lab, s in zip(self.labels, samples.each())
            if (now_ns - s.stamp_ns) * 1e-9 > max_age_s
        ]
        if stale:
            return STALE, f'older than max_obs_age_s={max_age_s}: {", ".join(stale)}', None
        return RUNNING, '', obs


def _observation(samples: Samples) -> Observation | None:
    """Return the observation of the samples, or None unless each holds a value."""
    rgb, depth, q = samples.rgb.value, samples.depth.value, samples.joints.value
    if rgb is None or depth is None or q is None:
        return None
    return Observation(rgb, depth, q)
