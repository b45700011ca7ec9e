"""
Commands of the policy node: the bounded, re-timed window of a prediction and its messages.

:func:`plan_window` applies latency compensation (:func:`~kinova_policy_ros.policy.safety.
retime_window`) and the command bounds (:func:`~kinova_policy_ros.policy.safety.
bound_trajectory`) to one prediction; :func:`command_msg` and :func:`predicted_msg` build the
``trajectory_msgs/JointTrajectory`` of the command and of the raw predicted horizon;
:func:`predicted_path_msg` the ``nav_msgs/Path`` of the end effector along that horizon (forward
kinematics of the predicted joints, for RViz / Foxglove before commands are enabled).
"""

from collections.abc import Sequence
from dataclasses import dataclass

from geometry_msgs.msg import PoseStamped
from kinova_policy_ros.core import kinematics
from kinova_policy_ros.core.errors import UnsafeCommandError
from kinova_policy_ros.policy.safety import bound_trajectory, CommandLimits, retime_window
from kinova_policy_ros.ros.messages import duration_msg, duration_ns_msg, time_msg
from nav_msgs.msg import Path
import numpy as np
import numpy.typing as npt
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

__all__ = [
    'MIN_LEAD_NS',
    'Plan',
    'chain_order',
    'command_msg',
    'plan_window',
    'predicted_msg',
    'predicted_path_msg',
]

MIN_LEAD_NS = 1_000_000
"""A point must lie at least this far in the future when the command is published."""

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]


@dataclass(frozen=True)
class Plan:
    """
    The points one command carries, in checkpoint joint order.

    ``first`` is the index of the first predicted point used (the points before it were due
    before the command could arrive), ``times_ns`` the ``time_from_start`` of each point.
    """

    first: int
    positions: FloatArray
    velocities: FloatArray
    times_ns: npt.NDArray[np.int64]


def plan_window(
    pred: npt.ArrayLike,
    q_meas: npt.ArrayLike,
    dt: float,
    elapsed_ns: int,
    action_horizon: int,
    limits: CommandLimits,
) -> Plan:
    """
    Choose, re-time and bound the points of one prediction ``[T, n]`` (rad).

    The model took ``elapsed_ns`` since the observation; the command starts on arrival (header
    stamp 0), see :func:`~kinova_policy_ros.policy.safety.retime_window`.

    :raises UnsafeCommandError: when the prediction is not finite, every point is already due,
        or the bounds cannot be met.
    """
    p = np.asarray(pred, dtype=np.float64)
    if not np.all(np.isfinite(p)):
        raise UnsafeCommandError('the model predicted non-finite joint positions')
    first, times_ns = retime_window(p.shape[0], dt, elapsed_ns, action_horizon, MIN_LEAD_NS)
    window = p[first:][: times_ns.shape[0]]
    positions, velocities = bound_trajectory(window, q_meas, times_ns * 1e-9, limits)
    return Plan(first, positions, velocities, times_ns)


def command_msg(plan: Plan, names: Sequence[str], index: IndexArray) -> JointTrajectory:
    """
    Return the command: joints ``names``, point ``c`` = checkpoint joint ``index[c]``.

    ``header.stamp`` stays 0: the controller starts the trajectory on arrival.
    """
    msg = JointTrajectory()
    msg.joint_names = list(names)
    for p, v, t in zip(plan.positions[:, index], plan.velocities[:, index], plan.times_ns):
        point = JointTrajectoryPoint()
        point.positions = p.tolist()
        point.velocities = v.tolist()
        point.time_from_start = duration_ns_msg(int(t))
        msg.points.append(point)
    return msg


def predicted_msg(
    pred: FloatArray, tick_ns: int, dt: float, names: Sequence[str], index: IndexArray
) -> JointTrajectory:
    """Return the raw predicted horizon: stamped ``tick_ns``, point ``i`` at ``(i + 1) dt``."""
    msg = JointTrajectory()
    msg.header.stamp = time_msg(tick_ns)
    msg.joint_names = list(names)
    for i, row in enumerate(pred[:, index]):
        point = JointTrajectoryPoint()
        point.positions = row.tolist()
        point.time_from_start = duration_msg((i + 1) * dt)
        msg.points.append(point)
    return msg


def predicted_path_msg(pred: FloatArray, tick_ns: int, dt: float, frame_id: str) -> Path:
    """
    Return the end-effector path of a prediction ``[T, 7]`` (rad, joint_1 .. joint_7 order).

    Pose ``i`` is :func:`~kinova_policy_ros.core.kinematics.fk` of row ``i`` (position and
    orientation of ``end_effector_link``), stamped ``tick_ns + (i + 1) dt`` like the point of
    ``~/predicted_trajectory``; every header has ``frame_id`` (the robot base frame).
    """
    xyz, rpy = kinematics.fk(pred)
    rotations = kinematics.rpy_to_matrix(rpy)
    msg = Path()
    msg.header.stamp = time_msg(tick_ns)
    msg.header.frame_id = frame_id
    for i in range(xyz.shape[0]):
        pose = PoseStamped()
        pose.header.stamp = time_msg(tick_ns + round((i + 1) * dt * 1e9))
        pose.header.frame_id = frame_id
        p, o = pose.pose.position, pose.pose.orientation
        p.x, p.y, p.z = (float(v) for v in xyz[i])
        o.x, o.y, o.z, o.w = (float(v) for v in kinematics.matrix_to_quaternion(rotations[i]))
        msg.poses.append(pose)
    return msg


def chain_order(names: Sequence[str]) -> IndexArray | None:
    """
    Return where joint_1 .. joint_7 sit in the checkpoint's ``names`` (a prefix is allowed).

    Names that do not end in ``joint_1`` .. ``joint_7`` exactly once each are taken in the order
    given; None when there are not 7 joints (no forward kinematics then).
    """
    if len(names) != kinematics.NUM_JOINTS:
        return None
    found = [[i for i, n in enumerate(names) if n.endswith(j)] for j in kinematics.JOINT_NAMES]
    if all(len(f) == 1 for f in found) and len({f[0] for f in found}) == len(found):
        return np.array([f[0] for f in found], dtype=np.intp)
    return np.arange(kinematics.NUM_JOINTS, dtype=np.intp)
