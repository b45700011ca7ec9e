"""
Kinova Gen3 (7-DoF) joint facts and kinematics, pure numpy.

The one kinematics module of the package: joint names, limits, forward kinematics to
``end_effector_link``, the geometric Jacobian, roll/pitch/yaw conversions and angle wrapping.
The kinematic chain is the ros2_kortex URDF of the Gen3 (docs/gen3.md): every joint rotates
about its own z axis and each joint frame sits at a fixed ``xyz``/``rpy`` origin in its parent.

Angles are radians, lengths metres, all frames are expressed in ``base_link``.
"""

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

JOINT_NAMES: tuple[str, ...] = tuple(f'joint_{i}' for i in range(1, 8))
"""Arm joint names in controller order (an optional prefix is the caller's business)."""

NUM_JOINTS = 7

CONTINUOUS: npt.NDArray[np.bool_] = np.array([True, False, True, False, True, False, True])
"""Joints 1, 3, 5 and 7 have no position limit (the URDF calls them continuous)."""

POSITION_LOWER: FloatArray = np.array([-np.inf, -2.24, -np.inf, -2.57, -np.inf, -2.09, -np.inf])
POSITION_UPPER: FloatArray = -POSITION_LOWER
VELOCITY_LIMITS: FloatArray = np.array([1.3963, 1.3963, 1.3963, 1.3963, 1.2218, 1.2218, 1.2218])
ACCELERATION_LIMITS: FloatArray = np.full(7, 8.6)
"""rad/s²: ``max_acceleration`` of every arm joint in the Gen3 MoveIt config (docs/gen3.md)."""

HOME: FloatArray = np.array([0.0, 0.26, np.pi, -2.27, 0.0, 0.96, np.pi / 2])
"""The "Home" pose of the Gen3 MoveIt configuration (tool pointing along +x)."""

BASE_LINK = 'base_link'
END_EFFECTOR_LINK = 'end_effector_link'


class JointOrigin(NamedTuple):
    """One URDF joint: its name, parent and child links and its origin in the parent link."""

    name: str
    parent: str
    child: str
    xyz: tuple[float, float, float]
    rpy: tuple[float, float, float]


_HALF_PI = np.pi / 2

URDF_CHAIN: tuple[JointOrigin, ...] = (
    JointOrigin('joint_1', 'base_link', 'shoulder_link', (0.0, 0.0, 0.15643), (np.pi, 0.0, 0.0)),
    JointOrigin(
        'joint_2', 'shoulder_link', 'half_arm_1_link', (0.0, 0.005375, -0.12838), (_HALF_PI, 0, 0)
    ),
    JointOrigin(
        'joint_3',
        'half_arm_1_link',
        'half_arm_2_link',
        (0.0, -0.21038, -0.006375),
        (-_HALF_PI, 0.0, 0.0),
    ),
    JointOrigin(
        'joint_4', 'half_arm_2_link', 'forearm_link', (0.0, 0.006375, -0.21038), (_HALF_PI, 0, 0)
    ),
    JointOrigin(
        'joint_5',
        'forearm_link',
        'spherical_wrist_1_link',
        (0.0, -0.20843, -0.006375),
        (-_HALF_PI, 0.0, 0.0),
    ),
    JointOrigin(
        'joint_6',
        'spherical_wrist_1_link',
        'spherical_wrist_2_link',
        (0.0, 0.00017505, -0.10593),
        (_HALF_PI, 0.0, 0.0),
    ),
    JointOrigin(
        'joint_7',
        'spherical_wrist_2_link',
        'bracelet_link',
        (0.0, -0.10593, -0.00017505),
        (-_HALF_PI, 0.0, 0.0),
    ),
)
"""The seven revolute joints of the Gen3 URDF, base to tip; every joint axis is z."""

END_EFFECTOR_ORIGIN = JointOrigin(
    'end_effector', 'bracelet_link', 'end_effector_link', (0.0, 0.0, -0.061525), (np.pi, 0, 0)
)
"""The fixed joint from ``bracelet_link`` to ``end_effector_link``."""


def rpy_to_matrix(rpy: npt.ArrayLike) -> FloatArray:
    """
    Rotation matrix of fixed-axis roll (x), pitch (y), yaw (z): ``Rz(yaw) @ Ry(pitch) @ Rx(roll)``.

    The URDF / tf2 convention. ``rpy`` is ``[..., 3]``; the result is ``[..., 3, 3]``.
    """
    a = np.asarray(rpy, dtype=np.float64)
    if a.shape[-1:] != (3,):
        raise ValueError(f'rpy must have a last dimension of 3, got shape {a.shape}')
    cr, cp, cy = np.cos(a[..., 0]), np.cos(a[..., 1]), np.cos(a[..., 2])
    sr, sp, sy = np.sin(a[..., 0]), np.sin(a[..., 1]), np.sin(a[..., 2])
    out = np.empty((*a.shape[:-1], 3, 3))
    out[..., 0, 0] = cy * cp
    out[..., 0, 1] = cy * sp * sr - sy * cr
    out[..., 0, 2] = cy * sp * cr + sy * sr
    out[..., 1, 0] = sy * cp
    out[..., 1, 1] = sy * sp * sr + cy * cr
    out[..., 1, 2] = sy * sp * cr - cy * sr
    out[..., 2, 0] = -sp
    out[..., 2, 1] = cp * sr
    out[..., 2, 2] = cp * cr
    return out


def axis_angle_to_matrix(axis: npt.ArrayLike, angle: float) -> FloatArray:
    """Rotation matrix [3, 3] of ``angle`` rad about ``axis`` [3] (any length > 0; Rodrigues)."""
    a = np.asarray(axis, dtype=np.float64)
    norm = float(np.linalg.norm(a))
    if a.shape != (3,) or not norm > 0.0:
        raise ValueError(f'axis must be a nonzero 3-vector, got {a.tolist()}')
    x, y, z = a / norm
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.asarray(np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * k @ k)


def matrix_to_quaternion(rotation: npt.ArrayLike) -> FloatArray:
    """Return the unit quaternion ``(x, y, z, w)`` (ROS order) of a rotation matrix [3, 3]."""
    r = np.asarray(rotation, dtype=np.float64)
    w = np.sqrt(max(0.0, 1.0 + r[0, 0] + r[1, 1] + r[2, 2])) / 2
    x = np.sqrt(max(0.0, 1.0 + r[0, 0] - r[1, 1] - r[2, 2])) / 2
    y = np.sqrt(max(0.0, 1.0 - r[0, 0] + r[1, 1] - r[2, 2])) / 2
    z = np.sqrt(max(0.0, 1.0 - r[0, 0] - r[1, 1] + r[2, 2])) / 2
    x = np.copysign(x, r[2, 1] - r[1, 2])
    y = np.copysign(y, r[0, 2] - r[2, 0])
    z = np.copysign(z, r[1, 0] - r[0, 1])
    q = np.array([x, y, z, w])
    return np.asarray(q / np.linalg.norm(q), dtype=np.float64)


def matrix_to_rpy(rotation: npt.ArrayLike) -> FloatArray:
    """
    Fixed-axis roll, pitch, yaw of a rotation matrix ``[..., 3, 3]``, like tf2 ``getRPY``.

    Pitch lies in [-π/2, π/2], roll and yaw in [-π, π]. At the singularity (pitch = ±π/2)
    yaw is set to 0 and the whole rotation about z goes into roll.
    """
    r = np.asarray(rotation, dtype=np.float64)
    if r.shape[-2:] != (3, 3):
        raise ValueError(f'rotation must have trailing shape (3, 3), got {r.shape}')
    pitch = np.arcsin(np.clip(-r[..., 2, 0], -1.0, 1.0))
    cos_p = np.sqrt(r[..., 0, 0] ** 2 + r[..., 1, 0] ** 2)
    singular = cos_p < 1e-9
    roll = np.where(
        singular, np.arctan2(-r[..., 1, 2], r[..., 1, 1]), np.arctan2(r[..., 2, 1], r[..., 2, 2])
    )
    yaw = np.where(singular, 0.0, np.arctan2(r[..., 1, 0], r[..., 0, 0]))
    return np.stack([roll, pitch, yaw], axis=-1)


def _origin_matrix(origin: JointOrigin) -> FloatArray:
    t = np.eye(4)
    t[:3, :3] = rpy_to_matrix(origin.rpy)
    t[:3, 3] = origin.xyz
    return t


ORIGIN_MATRICES: FloatArray = np.stack([_origin_matrix(o) for o in URDF_CHAIN])  # [7, 4, 4]
"""Homogeneous origin of each joint of ``URDF_CHAIN`` in its parent (the chain's constants)."""
EE_ORIGIN_MATRIX: FloatArray = _origin_matrix(END_EFFECTOR_ORIGIN)
"""Homogeneous origin of ``end_effector_link`` in ``bracelet_link``."""


def _as_joints(q: npt.ArrayLike, name: str = 'q') -> FloatArray:
    a = np.asarray(q, dtype=np.float64)
    if a.ndim == 0 or a.shape[-1] != NUM_JOINTS:
        raise ValueError(f'{name} must have a last dimension of {NUM_JOINTS}, got {a.shape}')
    return a


def _rot_z(q: FloatArray) -> FloatArray:
    """Homogeneous rotations about z, ``[...] -> [..., 4, 4]``."""
    c, s = np.cos(q), np.sin(q)
    out = np.zeros((*q.shape, 4, 4))
    out[..., 0, 0] = c
    out[..., 0, 1] = -s
    out[..., 1, 0] = s
    out[..., 1, 1] = c
    out[..., 2, 2] = 1.0
    out[..., 3, 3] = 1.0
    return out


def joint_frames(q: npt.ArrayLike) -> FloatArray:
    """
    Poses in ``base_link`` of the 7 joint frames and of ``end_effector_link``.

    ``q`` is ``[..., 7]``; the result is ``[..., 8, 4, 4]``: entry ``i < 7`` is the frame of
    joint ``i + 1`` at its origin (its z column is the joint axis, before the joint's own
    rotation), entry 7 is ``end_effector_link``.
    """
    qa = _as_joints(q)
    rz = _rot_z(qa)  # [..., 7, 4, 4]
    frames = np.empty((*qa.shape[:-1], 8, 4, 4))
    t = np.broadcast_to(np.eye(4), (*qa.shape[:-1], 4, 4))
    for i in range(NUM_JOINTS):
        t = t @ ORIGIN_MATRICES[i]
        frames[..., i, :, :] = t
        t = t @ rz[..., i, :, :]
    frames[..., 7, :, :] = t @ EE_ORIGIN_MATRIX
    return frames


def fk_matrix(q: npt.ArrayLike) -> FloatArray:
    """Homogeneous 4x4 pose of ``end_effector_link`` in ``base_link`` for one ``q[7]``."""
    qa = _as_joints(q)
    if qa.ndim != 1:
        raise ValueError(f'fk_matrix takes one configuration q[7], got shape {qa.shape}')
    return np.asarray(joint_frames(qa)[7], dtype=np.float64)


def fk(q: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """
    End-effector position and roll/pitch/yaw in ``base_link``, batched.

    ``q`` is ``[..., 7]``; returns ``(xyz [..., 3], rpy [..., 3])``.
    """
    t = joint_frames(q)[..., 7, :, :]
    return t[..., :3, 3].copy(), matrix_to_rpy(t[..., :3, :3])


def point_along_z(pose: npt.ArrayLike, offset: float) -> FloatArray:
    """Point ``offset`` metres along the z axis of ``pose`` ``[..., 4, 4]``: ``[..., 3]``."""
    t = np.asarray(pose, dtype=np.float64)
    point: FloatArray = t[..., :3, 3] + offset * t[..., :3, 2]
    return point


def tool_point(q: npt.ArrayLike, offset: float) -> FloatArray:
    """
    Position of the point ``offset`` metres along the z axis of ``end_effector_link``, batched.

    ``q`` is ``[..., 7]``; returns ``[..., 3]`` in ``base_link`` (``offset`` 0: ``fk``'s xyz; the
    Robotiq 2F-85's tool centre point, between the fingertips: 0.1086).
    """
    return point_along_z(joint_frames(q)[..., 7, :, :], offset)


def tool_matrix(offset: float) -> FloatArray:
    """``EE_ORIGIN_MATRIX`` moved ``offset`` metres along its own z axis: the tool frame."""
    shift = np.eye(4)
    shift[2, 3] = offset
    return np.asarray(EE_ORIGIN_MATRIX @ shift, dtype=np.float64)


def jacobian(q: npt.ArrayLike) -> FloatArray:
    """
    Geometric Jacobian ``[6, 7]`` of ``end_effector_link`` in the base frame.

    Rows 0-2 map joint velocities to the linear velocity of the end-effector origin, rows 3-5
    to its angular velocity, both expressed in ``base_link``.
    """
    qa = _as_joints(q)
    if qa.ndim != 1:
        raise ValueError(f'jacobian takes one configuration q[7], got shape {qa.shape}')
    frames = joint_frames(qa)
    axes = frames[:7, :3, 2]  # [7, 3]
    origins = frames[:7, :3, 3]
    p_ee = frames[7, :3, 3]
    jac = np.empty((6, NUM_JOINTS))
    jac[:3] = np.cross(axes, p_ee - origins).T
    jac[3:] = axes.T
    return jac


def wrap_to_pi(angle: npt.ArrayLike) -> FloatArray:
    """Wrap angles to [-π, π) (the Kortex driver reports arm angles wrapped like this)."""
    a = np.asarray(angle, dtype=np.float64)
    return np.mod(a + np.pi, 2 * np.pi) - np.pi


def _continuous_mask(continuous: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    mask = np.asarray(continuous, dtype=np.bool_)
    if mask.ndim != 1:
        raise ValueError(f'continuous must be a 1-D boolean mask, got shape {mask.shape}')
    return mask


def unwrap_continuous(q: npt.ArrayLike, continuous: npt.ArrayLike = CONTINUOUS) -> FloatArray:
    """
    Remove 2π jumps along time (axis 0) of the continuous joints of ``q [N, J]``.

    Other columns are returned unchanged. The first row is kept as it is, so an unwrapped
    trajectory starts where the wrapped one starts.
    """
    qa = np.array(q, dtype=np.float64)
    mask = _continuous_mask(continuous)
    if qa.ndim != 2 or qa.shape[1] != mask.shape[0]:
        raise ValueError(
            f'q must be [N, {mask.shape[0]}] to match the continuous mask, got {qa.shape}'
        )
    if qa.shape[0] > 1 and mask.any():
        qa[:, mask] = np.unwrap(qa[:, mask], axis=0)
    return qa


def nearest_equivalent(
    q: npt.ArrayLike, reference: npt.ArrayLike, continuous: npt.ArrayLike = CONTINUOUS
) -> FloatArray:
    """
    For continuous joints, the angle ``q + 2πk`` closest to ``reference``; others unchanged.

    ``q`` and ``reference`` broadcast against each other with the joints on the last axis.
    """
    qa = np.asarray(q, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    mask = _continuous_mask(continuous)
    qa, ref = np.broadcast_arrays(qa, ref)
    k = np.round((ref - qa) / (2 * np.pi))
    return np.where(mask, qa + 2 * np.pi * k, qa)


def within_limits(q: npt.ArrayLike, tolerance: float = 0.0) -> npt.NDArray[np.bool_]:
    """Whether every joint of ``q [..., 7]`` lies inside the position limits (± tolerance)."""
    qa = _as_joints(q)
    ok = (qa >= POSITION_LOWER - tolerance) & (qa <= POSITION_UPPER + tolerance)
    return np.asarray(ok.all(axis=-1))


def clip_to_limits(q: npt.ArrayLike, margin: float = 0.0) -> FloatArray:
    """Clip the limited joints of ``q [..., 7]`` into ``[lower + margin, upper - margin]``."""
    qa = _as_joints(q)
    return np.clip(qa, POSITION_LOWER + margin, POSITION_UPPER - margin)
