"""
Time synchronisation for the bag converter (pure numpy, no ROS).

* :class:`JointTrack` — ``/joint_states`` messages mapped by name, sampled at camera stamps by
  linear interpolation (continuous joints unwrapped first), velocities from the messages or
  from finite differences.
* :class:`TfBuffer` — ``/tf`` + ``/tf_static`` edges, looked up base → end effector at many
  stamps at once (translation interpolated linearly, rotation by slerp).
* :func:`split_segments` — continuous segments of a stamp sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
import itertools

from kinova_policy_ros.core import kinematics as kin
from kinova_policy_ros.core.errors import BagError
import numpy as np

__all__ = [
    'JointSamples',
    'JointTrack',
    'TfBuffer',
    'quat_to_matrix',
    'rebase_continuous',
    'slerp',
    'split_segments',
]


@dataclass
class JointSamples:
    """Joint values at requested stamps; ``reason`` is '' where valid, else why not."""

    q: np.ndarray
    dq: np.ndarray
    valid: np.ndarray
    reason: np.ndarray
    velocity_source: str


@dataclass
class JointTrack:
    """Accumulates ``/joint_states`` messages for a fixed joint order (mapped by name)."""

    joint_names: tuple[str, ...]
    where: str = '/joint_states'
    stamps: list[int] = field(default_factory=list)
    positions: list[np.ndarray] = field(default_factory=list)
    velocities: list[np.ndarray | None] = field(default_factory=list)
    skipped_without_arm_joints: int = 0
    _index_cache: dict[tuple[str, ...], np.ndarray | None] = field(default_factory=dict)

    def _indices(self, names: tuple[str, ...]) -> np.ndarray | None:
        if names not in self._index_cache:
            lookup = {n: i for i, n in enumerate(names)}
            missing = [j for j in self.joint_names if j not in lookup]
            if len(missing) == len(self.joint_names):
                self._index_cache[names] = None  # e.g. a gripper-only JointState publisher
            elif missing:
                raise BagError(
                    f'{self.where}: joint {missing[0]!r} missing'
                    f'{f" (also {missing[1:]})" if len(missing) > 1 else ""}; '
                    f'the message has {list(names)}'
                )
            else:
                self._index_cache[names] = np.array([lookup[j] for j in self.joint_names])
        return self._index_cache[names]

    def add(
        self,
        stamp_ns: int,
        names: Sequence[str],
        position: Sequence[float] | np.ndarray,
        velocity: Sequence[float] | np.ndarray,
    ) -> None:
        """Add one message; raises :class:`BagError` for a missing joint or going back in time."""
        names_t = tuple(str(n) for n in names)
        idx = self._indices(names_t)
        if idx is None:
            self.skipped_without_arm_joints += 1
            return
        pos = np.asarray(position, dtype=np.float64)
        if pos.shape[0] != len(names_t):
            raise BagError(
                f'{self.where}: message at {stamp_ns} ns has {len(names_t)} names but '
                f'{pos.shape[0]} positions'
            )
        vel = np.asarray(velocity, dtype=np.float64)
        if self.stamps and stamp_ns < self.stamps[-1]:
            raise BagError(
                f'{self.where}: stamps are not monotonic ({self.stamps[-1]} ns then '
                f'{stamp_ns} ns at message {len(self.stamps)})'
            )
        if self.stamps and stamp_ns == self.stamps[-1]:
            self.stamps.pop()  # a repeated stamp: the newer message wins
            self.positions.pop()
            self.velocities.pop()
        self.stamps.append(int(stamp_ns))
        self.positions.append(pos[idx])
        self.velocities.append(vel[idx] if vel.shape[0] == len(names_t) else None)

    def __len__(self) -> int:
        return len(self.stamps)

    def sample(self, stamps_ns: np.ndarray, max_gap_ns: int) -> JointSamples:
        """
        Interpolate q and dq at ``stamps_ns``.

        A stamp between two messages at most ``max_gap_ns`` apart is interpolated linearly; a
        stamp before the first / after the last message takes that message's value when it is
        within ``max_gap_ns`` of it (no extrapolation); otherwise it is invalid. Continuous joints
        are unwrapped along the messages before interpolating, so a joint crossing ±π
        interpolates through π and not through 0.
        """
        n = len(stamps_ns)
        j = len(self.stamps)
        q = np.zeros((n, len(self.joint_names)))
        dq = np.zeros_like(q)
        reason = np.full(n, '', dtype=object)
        if j == 0:
            reason[:] = 'no_joint_state'
            return JointSamples(q, dq, np.zeros(n, bool), reason, 'none')
        t = np.asarray(self.stamps, dtype=np.int64)
        pos = kin.unwrap_continuous(np.stack(self.positions), _continuous_mask(self.joint_names))
        if all(v is not None for v in self.velocities):
            vel = np.stack([v for v in self.velocities if v is not None])
            source = 'message'
        elif j >= 2:
            vel = np.gradient(pos, (t - t[0]) * 1e-9, axis=0)
            source = 'finite_difference'
        else:
            vel = np.zeros_like(pos)
            source = 'none'
        s = np.asarray(stamps_ns, dtype=np.int64)
        hi = np.searchsorted(t, s, side='left')  # first message at or after the stamp
        lo = np.clip(hi - 1, 0, j - 1)
        hi_c = np.clip(hi, 0, j - 1)
        exact = (hi < j) & (t[hi_c] == s)
        lo = np.where(exact, hi_c, lo)
        before = (hi == 0) & ~exact
        after = hi >= j
        inside = ~before & ~after & ~exact
        gap = t[hi_c] - t[lo]
        w = np.where(inside & (gap > 0), (s - t[lo]) / np.maximum(gap, 1), 0.0)
        q = pos[lo] + w[:, None] * (pos[hi_c] - pos[lo])
        dq = vel[lo] + w[:, None] * (vel[hi_c] - vel[lo])
        q[before] = pos[0]
        dq[before] = vel[0]
        valid = np.ones(n, bool)
        edge_far = (before & (t[0] - s > max_gap_ns)) | (after & (s - t[-1] > max_gap_ns))
        reason[edge_far] = 'no_joint_state'
        big_gap = inside & (gap > max_gap_ns)
        reason[big_gap] = 'joint_gap'
        valid[edge_far | big_gap] = False
        return JointSamples(q, dq, valid, reason, source)


def _continuous_mask(joint_names: Sequence[str]) -> np.ndarray:
    mask = np.asarray(kin.CONTINUOUS, dtype=bool)
    if mask.shape[0] != len(joint_names):
        return np.zeros(len(joint_names), bool)
    return mask


def rebase_continuous(q: np.ndarray, continuous: np.ndarray) -> np.ndarray:
    """Shift continuous joints by whole turns so that the first frame lies in [-π, π)."""
    out = np.array(q, dtype=np.float64)
    if out.shape[0] == 0:
        return out
    mask = np.asarray(continuous, dtype=bool)
    offset = out[0, mask] - kin.wrap_to_pi(out[0, mask])
    out[:, mask] -= offset
    return out


def split_segments(stamps_ns: np.ndarray, gap_ns: int | None) -> list[slice]:
    """Return slices of ``stamps_ns`` with no step larger than ``gap_ns`` (one slice if None)."""
    n = len(stamps_ns)
    if n == 0:
        return []
    if gap_ns is None:
        return [slice(0, n)]
    cuts = np.flatnonzero(np.diff(np.asarray(stamps_ns, dtype=np.int64)) > gap_ns) + 1
    bounds = [0, *cuts.tolist(), n]
    return [slice(a, b) for a, b in itertools.pairwise(bounds)]


def quat_to_matrix(quat_xyzw: np.ndarray) -> np.ndarray:
    """Rotation matrices ``[..., 3, 3]`` of unit quaternions ``[..., 4]`` (x, y, z, w)."""
    qa = np.asarray(quat_xyzw, dtype=np.float64)
    qa = qa / np.linalg.norm(qa, axis=-1, keepdims=True)
    x, y, z, w = qa[..., 0], qa[..., 1], qa[..., 2], qa[..., 3]
    out = np.empty((*qa.shape[:-1], 3, 3))
    out[..., 0, 0] = 1 - 2 * (y * y + z * z)
    out[..., 0, 1] = 2 * (x * y - z * w)
    out[..., 0, 2] = 2 * (x * z + y * w)
    out[..., 1, 0] = 2 * (x * y + z * w)
    out[..., 1, 1] = 1 - 2 * (x * x + z * z)
    out[..., 1, 2] = 2 * (y * z - x * w)
    out[..., 2, 0] = 2 * (x * z - y * w)
    out[..., 2, 1] = 2 * (y * z + x * w)
    out[..., 2, 2] = 1 - 2 * (x * x + y * y)
    return out


def slerp(q0: np.ndarray, q1: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Spherical linear interpolation of quaternions ``[N, 4]`` with weights ``w [N]``."""
    a = q0 / np.linalg.norm(q0, axis=-1, keepdims=True)
    b = q1 / np.linalg.norm(q1, axis=-1, keepdims=True)
    dot = np.sum(a * b, axis=-1)
    b = np.where(dot[:, None] < 0, -b, b)
    dot = np.abs(dot)
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    sin_t = np.sin(theta)
    small = sin_t < 1e-9
    safe = np.where(small, 1.0, sin_t)
    wa = np.where(small, 1.0 - w, np.sin((1.0 - w) * theta) / safe)
    wb = np.where(small, w, np.sin(w * theta) / safe)
    out = wa[:, None] * a + wb[:, None] * b
    unit: np.ndarray = out / np.linalg.norm(out, axis=-1, keepdims=True)
    return unit


@dataclass
class _Edge:
    stamps: list[int] = field(default_factory=list)
    xyz: list[tuple[float, float, float]] = field(default_factory=list)
    quat: list[tuple[float, float, float, float]] = field(default_factory=list)
    static: bool = False


def _frame(name: str) -> str:
    return name.lstrip('/')


class TfBuffer:
    """Transforms of ``/tf`` and ``/tf_static``, looked up in batch along the base → ee chain."""

    def __init__(self) -> None:
        self._edges: dict[tuple[str, str], _Edge] = {}
        self._parent: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._edges)

    def add(
        self,
        parent: str,
        child: str,
        stamp_ns: int,
        xyz: tuple[float, float, float],
        quat_xyzw: tuple[float, float, float, float],
        *,
        static: bool,
    ) -> None:
        """Add one transform (pose of ``child`` in ``parent``)."""
        parent, child = _frame(parent), _frame(child)
        self._parent[child] = parent
        edge = self._edges.setdefault((parent, child), _Edge(static=static))
        if static:
            edge.static = True
            edge.stamps, edge.xyz, edge.quat = [int(stamp_ns)], [xyz], [quat_xyzw]
            return
        if edge.stamps and stamp_ns <= edge.stamps[-1]:
            if stamp_ns == edge.stamps[-1]:
                edge.xyz[-1], edge.quat[-1] = xyz, quat_xyzw
            return  # tf2 also keeps the newest data; out-of-order repeats are ignored
        edge.stamps.append(int(stamp_ns))
        edge.xyz.append(xyz)
        edge.quat.append(quat_xyzw)

    def frames(self) -> list[str]:
        return sorted({f for e in self._edges for f in e})

    def chain(self, base: str, target: str) -> list[tuple[str, str]] | None:
        """Edges from ``base`` down to ``target`` (``None`` if they are not connected)."""
        base, target = _frame(base), _frame(target)
        path: list[tuple[str, str]] = []
        frame = target
        seen = {frame}
        while frame != base:
            parent = self._parent.get(frame)
            if parent is None or parent in seen:
                return None
            path.append((parent, frame))
            seen.add(parent)
            frame = parent
        return path[::-1]

    def lookup(
        self, base: str, target: str, stamps_ns: np.ndarray, max_gap_ns: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """
        Poses ``[N, 4, 4]`` of ``target`` in ``base`` at ``stamps_ns`` and a validity mask.

        A stamp is valid when every dynamic edge of the chain has samples around it no more than
        ``max_gap_ns`` apart (or one within ``max_gap_ns`` at either end).
        """
        path = self.chain(base, target)
        n = len(stamps_ns)
        out = np.tile(np.eye(4), (n, 1, 1))
        valid = np.ones(n, bool)
        if path is None:
            return out, np.zeros(n, bool)
        s = np.asarray(stamps_ns, dtype=np.int64)
        for key in path:
            edge = self._edges[key]
            t = np.asarray(edge.stamps, dtype=np.int64)
            xyz = np.asarray(edge.xyz, dtype=np.float64)
            quat = np.asarray(edge.quat, dtype=np.float64)
            m = len(t)
            if edge.static or m == 1:
                xyz_s = np.broadcast_to(xyz[0], (n, 3))
                quat_s = np.broadcast_to(quat[0], (n, 4))
                if not edge.static:
                    valid &= np.abs(s - t[0]) <= max_gap_ns
            else:
                hi = np.clip(np.searchsorted(t, s, side='left'), 1, m - 1)
                lo = hi - 1
                gap = t[hi] - t[lo]
                w = np.clip((s - t[lo]) / np.maximum(gap, 1), 0.0, 1.0)
                xyz_s = xyz[lo] + w[:, None] * (xyz[hi] - xyz[lo])
                quat_s = slerp(quat[lo], quat[hi], w)
                inside = (s >= t[0]) & (s <= t[-1])
                valid &= np.where(
                    inside,
                    gap <= max_gap_ns,
                    np.minimum(np.abs(s - t[0]), np.abs(s - t[-1])) <= max_gap_ns,
                )
            step = np.tile(np.eye(4), (n, 1, 1))
            step[:, :3, :3] = quat_to_matrix(quat_s)
            step[:, :3, 3] = xyz_s
            out = out @ step
        return out, valid
