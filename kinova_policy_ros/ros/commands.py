"""
Messages of the policy node: the command, the raw prediction and the predicted path.

The points of a command come from :class:`~kinova_policy_ros.policy.handover.Planner` (latency
compensation, hand-over, bounds); :func:`command_msg` and :func:`predicted_msg` build the
``trajectory_msgs/JointTrajectory`` of the command and of the raw predicted horizon;
:func:`predicted_path_msg` the ``nav_msgs/Path`` of the end effector along that horizon (forward
kinematics of the predicted joints, for RViz / Foxglove before commands are enabled).
"""

from collections.abc import Sequence

from geometry_msgs.msg import PoseStamped
from kinova_policy_ros.core import kinematics
from kinova_policy_ros.policy.handover import Plan
from kinova_policy_ros.ros.messages import duration_msg, duration_ns_msg, time_msg
from nav_msgs.msg import Path
import numpy as np
import numpy.typing as npt
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

__all__ = [
    'chain_order',
    'command_msg',
    'predicted_msg',
    'predicted_path_msg',
]

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]


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
