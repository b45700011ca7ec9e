"""
Inputs of the policy node: decode image and joint-state messages, keep the newest of each.

The subscription callbacks (executor thread) turn each message into a :class:`Sample` (the
receipt time and the decoded value, or the error that names the topic) and put it into the
:class:`InputBuffer`; the control thread takes the newest three and :meth:`InputBuffer.check`
says whether they make a valid, fresh observation.

Order: the newest sample of an input is the last one *received*, except that a message whose
header stamp is older than the held sample's (both non-zero) is dropped when it arrives within
:data:`REORDER_WINDOW_NS` of the held one (a reordered or duplicated-late frame never replaces
newer data; a stream whose clock restarted is accepted again after that window, or at once when
the node's own clock went back). Freshness is by receipt time on the node's clock: a sample
received more than :data:`CLOCK_BACK_TOLERANCE_NS` "in the future" (the clock jumped back,
e.g. ``use_sim_time`` with a restarted ``/clock``) is stale, never fresh.
"""

from collections.abc import Sequence
from dataclasses import dataclass
import threading
from typing import Generic, NamedTuple, TypeVar

from kinova_policy_ros.core import image_codec
from kinova_policy_ros.core.errors import DecodeError
from kinova_policy_ros.core.stamps import stamp_to_ns
from kinova_policy_ros.ros.diagnostics import INVALID, RUNNING, STALE, WAITING
import numpy as np
import numpy.typing as npt
from sensor_msgs.msg import CompressedImage, Image, JointState

__all__ = [
    'CLOCK_BACK_TOLERANCE_NS',
    'REORDER_WINDOW_NS',
    'DepthArray',
    'FloatArray',
    'InputBuffer',
    'JointStateReader',
    'Observation',
    'RgbArray',
    'Sample',
    'Samples',
    'depth_sample',
    'out_of_order',
    'rgb_sample',
]

RgbArray = npt.NDArray[np.uint8]
DepthArray = npt.NDArray[np.float32]
FloatArray = npt.NDArray[np.float64]
ArrayT_co = TypeVar('ArrayT_co', bound=npt.NDArray[np.generic], covariant=True)

REORDER_WINDOW_NS = 1_000_000_000
"""How long after the held sample's receipt a message with an older header stamp is dropped."""

CLOCK_BACK_TOLERANCE_NS = 1_000_000_000
"""A sample received more than this after ``now`` (the clock went back) is stale."""


@dataclass(frozen=True)
class Sample(Generic[ArrayT_co]):
    """
    The newest message of one input: receipt time, decoded value or the decode error.

    ``header_ns`` is the message's header stamp (0: unstamped), used only to drop a message that
    arrives after a newer one (see :meth:`InputBuffer.put_rgb`).
    """

    stamp_ns: int = 0
    value: ArrayT_co | None = None
    error: str = ''
    header_ns: int = 0


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
    header_ns = _header_ns(msg)
    try:
        if isinstance(msg, CompressedImage):
            rgb = image_codec.decode_compressed_rgb(msg)
        else:
            rgb = image_codec.decode_rgb(msg)
    except DecodeError as err:
        return Sample(stamp_ns, None, f'{topic}: {err}', header_ns)
    return Sample(stamp_ns, rgb, '', header_ns)


def depth_sample(msg: Image, stamp_ns: int, topic: str) -> Sample[DepthArray]:
    """Decode a depth ``Image`` to metres, non-finite values as 0 (like the dataset)."""
    header_ns = _header_ns(msg)
    try:
        depth = image_codec.decode_depth(msg)
    except DecodeError as err:
        return Sample(stamp_ns, None, f'{topic}: {err}', header_ns)
    if not np.all(np.isfinite(depth)):
        # The dataset stores 0 where depth is invalid: do the same online.
        depth = np.where(np.isfinite(depth), depth, np.float32(0.0)).astype(np.float32)
    return Sample(stamp_ns, depth, '', header_ns)


def _header_ns(msg: Image | CompressedImage | JointState) -> int:
    """Return the header stamp in ns (0 when it is unset or not a valid time)."""
    try:
        return max(0, stamp_to_ns(msg.header.stamp))
    except (AttributeError, TypeError, ValueError):
        return 0


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
        header_ns = _header_ns(msg)
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
            return Sample(stamp_ns, None, f'{self.topic}: {err}', header_ns)
        return Sample(stamp_ns, q, '', header_ns)


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
        self.dropped = [0, 0, 0]
        """Messages dropped as out of order: RGB, depth, joint states."""

    def put_rgb(self, sample: Sample[RgbArray]) -> bool:
        """Replace the RGB sample unless it is out of order (:func:`out_of_order`); say which."""
        with self._lock:
            if out_of_order(sample, self._rgb):
                self.dropped[0] += 1
                return False
            self._rgb = sample
            return True

    def put_depth(self, sample: Sample[DepthArray]) -> bool:
        """Replace the depth sample unless it is out of order; return whether it was kept."""
        with self._lock:
            if out_of_order(sample, self._depth):
                self.dropped[1] += 1
                return False
            self._depth = sample
            return True

    def put_joints(self, sample: Sample[FloatArray]) -> bool:
        """Replace the joint-state sample unless it is out of order; return whether it was kept."""
        with self._lock:
            if out_of_order(sample, self._joints):
                self.dropped[2] += 1
                return False
            self._joints = sample
            return True

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
            received, or not since the reset) or :data:`STALE` (older than ``max_age_s``, or
            received more than :data:`CLOCK_BACK_TOLERANCE_NS` after ``now_ns``: the clock
            went back) with the topics in the detail and
            no observation.
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
        ahead = [
            f'{lab} ({(s.stamp_ns - now_ns) * 1e-9:.3f} s)'
            for lab, s in zip(self.labels, samples.each())
            if s.stamp_ns - now_ns > CLOCK_BACK_TOLERANCE_NS
        ]
        if ahead:
            return STALE, f'received after now (the clock went back): {", ".join(ahead)}', None
        stale = [
            f'{lab} ({(now_ns - s.stamp_ns) * 1e-9:.3f} s old)'
            for lab, s in zip(self.labels, samples.each())
            if (now_ns - s.stamp_ns) * 1e-9 > max_age_s
        ]
        if stale:
            return STALE, f'older than max_obs_age_s={max_age_s}: {", ".join(stale)}', None
        return RUNNING, '', obs


def out_of_order(new: Sample[ArrayT_co], held: Sample[ArrayT_co]) -> bool:
    """
    Return whether ``new`` is older than ``held`` by header stamp and must be dropped.

    Both must be stamped (non-zero), ``new`` strictly older, and received no earlier than
    ``held`` and within :data:`REORDER_WINDOW_NS` of it: a message older than one received
    before it is a reordered or late duplicate; after the window (a stream whose clock
    restarted) or when the receipt time went back (the node's clock restarted) it is kept.
    """
    if not (new.header_ns and held.header_ns and new.header_ns < held.header_ns):
        return False
    return 0 <= new.stamp_ns - held.stamp_ns <= REORDER_WINDOW_NS


def _observation(samples: Samples) -> Observation | None:
    """Return the observation of the samples, or None unless each holds a value."""
    rgb, depth, q = samples.rgb.value, samples.depth.value, samples.joints.value
    if rgb is None or depth is None or q is None:
        return None
    return Observation(rgb, depth, q)
