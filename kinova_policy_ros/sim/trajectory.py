"""
``joint_trajectory_controller`` semantics for the simulator, pure Python (no ROS).

What ros2_controllers' JointTrajectoryController does with a ``trajectory_msgs/JointTrajectory``
arriving on its topic (docs/controller.md), reproduced here so that the simulated Gen3 reacts to
streamed commands like the real one:

- validation (a rejected message leaves the running trajectory untouched; the reason is logged):
  no points; joint names missing, duplicated or unknown (``allow_partial_joints_goal: false``,
  so all 7 arm joints are required, in any order); a point whose position / velocity count does
  not match the joint names; a non-finite value; ``time_from_start`` not strictly increasing;
  a non-zero header stamp whose trajectory ends in the past; a non-zero velocity at the last
  point while ``allow_nonzero_velocity_at_trajectory_end`` is false (the Jazzy / Kilted default,
  and this class's; Humble's default is true);
- a valid message REPLACES the running trajectory; the new one starts from the measured state at
  arrival (``interpolate_from_desired_state: false``, the default) or from the state the running
  trajectory commands at that instant (``true``, Jazzy+; Humble: ``open_loop_control``);
- ``header.stamp == 0`` starts the trajectory on arrival; a non-zero stamp is the start time: in
  the past the controller skips into the middle of the trajectory, in the future it holds the
  state at arrival until then;
- positions only: linear interpolation; positions + velocities: cubic Hermite spline
  (accelerations are ignored);
- after the last point the controller holds the last position (velocity 0);
- continuous joints: Humble behaviour by default (no angle wraparound: a command 2π away from the
  measured angle makes the joint turn a full circle); ``angle_wraparound=True`` gives the
  Jazzy+ shortest-way behaviour.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from kinova_policy_ros.core import kinematics as kin
from kinova_policy_ros.core.errors import KinovaPolicyError
from kinova_policy_ros.policy.handover import hermite
import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


class TrajectoryRejected(KinovaPolicyError):
    """A JointTrajectory message the controller refuses; the message says why."""


@dataclass(frozen=True)
class TrajectoryCommand:
    """
    The content of one ``trajectory_msgs/JointTrajectory`` message, ROS-free.

    ``time_from_start`` is seconds ``[P]``; ``positions`` / ``velocities`` are ``[P][J]`` in the
    order of ``joint_names`` (``velocities`` rows may be empty, or all of them None).
    ``stamp_ns == 0`` means "start on arrival".
    """

    joint_names: Sequence[str]
    time_from_start: Sequence[float]
    positions: Sequence[Sequence[float]]
    velocities: Sequence[Sequence[float]] | None = None
    stamp_ns: int = 0


class ActiveTrajectory:
    """An accepted trajectory, anchored at the measured state and the time it arrived."""

    def __init__(
        self,
        arrival_ns: int,
        start_ns: int,
        q_start: FloatArray,
        dq_start: FloatArray,
        times: FloatArray,
        positions: FloatArray,
        velocities: FloatArray | None,
    ) -> None:
        self.arrival_ns = arrival_ns
        self.start_ns = start_ns
        self.q_start = q_start
        self.dq_start = dq_start
        self.times = times
        self.positions = positions
        self.velocities = velocities

    @property
    def end_ns(self) -> int:
        """Time of the last point, ns."""
        return self.start_ns + round(float(self.times[-1]) * 1e9)

    def sample(self, now_ns: int) -> tuple[FloatArray, FloatArray]:
        """Desired ``(position, velocity)`` at ``now_ns``."""
        if now_ns < self.start_ns:  # stamp in the future: hold the state at arrival
            return self.q_start.copy(), np.zeros_like(self.q_start)
        t = (now_ns - self.start_ns) * 1e-9
        times = self.times
        if t >= times[-1]:
            return self.positions[-1].copy(), np.zeros_like(self.q_start)
        cubic = self.velocities is not None
        if t < times[0]:
            # from the state at arrival to the first point
            t0 = max(0.0, (self.arrival_ns - self.start_ns) * 1e-9)
            t0 = min(t0, float(times[0]) - 1e-9)
            p0, v0 = self.q_start, self.dq_start if cubic else self.q_start * 0
            p1 = self.positions[0]
            v1 = self.velocities[0] if self.velocities is not None else p1 * 0
            t1 = float(times[0])
        else:
            i = int(np.searchsorted(times, t, side='right')) - 1
            t0, t1 = float(times[i]), float(times[i + 1])
            p0, p1 = self.positions[i], self.positions[i + 1]
            if self.velocities is not None:
                v0, v1 = self.velocities[i], self.velocities[i + 1]
            else:
                v0 = v1 = p0 * 0
        if cubic:
            return hermite(t, t0, t1, p0, v0, p1, v1)
        s = min(max((t - t0) / (t1 - t0), 0.0), 1.0)
        return p0 + s * (p1 - p0), (p1 - p0) / (t1 - t0)


class TrajectoryFollower:
    """
    The controller: accept or reject commands, and sample the running one.

    :param joint_names: the controller's joints (default the Gen3 arm joints, in order).
    :param angle_wraparound: shift continuous joints to the shortest way (Jazzy+), off like
        Humble.
    :param allow_nonzero_velocity_at_trajectory_end: accept a last point with a non-zero
        velocity (false: rejected, the Jazzy / Kilted default).
    :param interpolate_from_desired_state: start a new trajectory from the running one's
        commanded state instead of the measured one.
    """

    def __init__(
        self,
        joint_names: Sequence[str] = kin.JOINT_NAMES,
        angle_wraparound: bool = False,
        allow_nonzero_velocity_at_trajectory_end: bool = False,
        interpolate_from_desired_state: bool = False,
    ) -> None:
        self.joint_names = tuple(joint_names)
        self.angle_wraparound = angle_wraparound
        self.allow_nonzero_velocity_at_trajectory_end = allow_nonzero_velocity_at_trajectory_end
        self.interpolate_from_desired_state = interpolate_from_desired_state
        self.active: ActiveTrajectory | None = None
        self.accepted = 0
        self.rejected = 0
        self.last_rejection = ''

    def reset(self) -> None:
        """Drop the running trajectory (after a simulator reset)."""
        self.active = None

    def validate(
        self, cmd: TrajectoryCommand, now_ns: int
    ) -> tuple[FloatArray, FloatArray | None]:
        """
        Check ``cmd`` like the controller does.

        Returns positions and velocities in controller order, or raises ``TrajectoryRejected``
        naming the problem.
        """
        names = list(cmd.joint_names)
        if not names:
            raise TrajectoryRejected('rejected: empty joint_names')
        if len(set(names)) != len(names):
            raise TrajectoryRejected(f'rejected: duplicated joint names in {names}')
        unknown = [n for n in names if n not in self.joint_names]
        missing = [n for n in self.joint_names if n not in names]
        if unknown or missing:
            raise TrajectoryRejected(
                f'rejected: joints must be exactly {list(self.joint_names)} (all of them, any '
                f'order); missing {missing}, unknown {unknown}'
            )
        n_points = len(cmd.positions)
        if n_points == 0:
            raise TrajectoryRejected('rejected: trajectory has no points')
        times = np.asarray(cmd.time_from_start, dtype=np.float64)
        if times.shape != (n_points,):
            raise TrajectoryRejected(
                f'rejected: {times.size} time_from_start values for {n_points} points'
            )
        if not np.isfinite(times).all() or (times < 0).any():
            raise TrajectoryRejected(f'rejected: invalid time_from_start {times.tolist()}')
        bad = np.nonzero(np.diff(times) <= 0)[0]
        if bad.size:
            i = int(bad[0])
            raise TrajectoryRejected(
                f'rejected: time_from_start must strictly increase; point {i + 1} at '
                f'{times[i + 1]:.6f} s is not after point {i} at {times[i]:.6f} s'
            )
        order = [names.index(n) for n in self.joint_names]
        pos = np.empty((n_points, len(names)))
        for i, p in enumerate(cmd.positions):
            if len(p) != len(names):
                raise TrajectoryRejected(
                    f'rejected: point {i} has {len(p)} positions for {len(names)} joints'
                )
            pos[i] = p
        vel: FloatArray | None = None
        rows = list(cmd.velocities) if cmd.velocities is not None else []
        if any(len(v) for v in rows):
            if len(rows) != n_points:
                raise TrajectoryRejected(
                    f'rejected: {len(rows)} velocity rows for {n_points} points'
                )
            vel = np.empty((n_points, len(names)))
            for i, v in enumerate(rows):
                if len(v) != len(names):
                    raise TrajectoryRejected(
                        f'rejected: point {i} has {len(v)} velocities for {len(names)} joints'
                    )
                vel[i] = v
        if not np.isfinite(pos).all() or (vel is not None and not np.isfinite(vel).all()):
            raise TrajectoryRejected('rejected: non-finite position or velocity value')
        if (
            vel is not None
            and not self.allow_nonzero_velocity_at_trajectory_end
            and np.any(vel[-1] != 0.0)
        ):
            raise TrajectoryRejected(
                'rejected: the last point has a non-zero velocity '
                f'{vel[-1].tolist()} and allow_nonzero_velocity_at_trajectory_end is false'
            )
        if cmd.stamp_ns != 0 and cmd.stamp_ns + round(times[-1] * 1e9) < now_ns:
            raise TrajectoryRejected(
                f'rejected: non-zero header stamp {cmd.stamp_ns} ns makes the trajectory end in '
                f'the past (now {now_ns} ns)'
            )
        return pos[:, order], (vel[:, order] if vel is not None else None)

    def set_trajectory(
        self,
        cmd: TrajectoryCommand,
        now_ns: int,
        q_measured: npt.ArrayLike,
        dq_measured: npt.ArrayLike,
    ) -> ActiveTrajectory:
        """
        Accept ``cmd`` (replacing the running trajectory) or raise ``TrajectoryRejected``.

        ``q_measured`` / ``dq_measured`` are the measured joint state at arrival, controller
        order (as the hardware reports it: wrapped continuous joints).
        """
        try:
            pos, vel = self.validate(cmd, now_ns)
        except TrajectoryRejected as err:
            self.rejected += 1
            self.last_rejection = str(err)
            raise
        q0 = np.asarray(q_measured, dtype=np.float64).copy()
        dq0 = np.asarray(dq_measured, dtype=np.float64).copy()
        desired = self.sample(now_ns) if self.interpolate_from_desired_state else None
        if desired is not None:
            q0, dq0 = desired
        if self.angle_wraparound and len(self.joint_names) == kin.NUM_JOINTS:
            shift = kin.nearest_equivalent(pos[0], q0) - pos[0]
            pos = pos + shift
        start = now_ns if cmd.stamp_ns == 0 else int(cmd.stamp_ns)
        self.active = ActiveTrajectory(
            arrival_ns=now_ns,
            start_ns=start,
            q_start=q0,
            dq_start=dq0,
            times=np.asarray(cmd.time_from_start, dtype=np.float64),
            positions=pos,
            velocities=vel,
        )
        self.accepted += 1
        return self.active

    def sample(self, now_ns: int) -> tuple[FloatArray, FloatArray] | None:
        """Desired ``(position, velocity)`` at ``now_ns``; None when nothing was ever accepted."""
        if self.active is None:
            return None
        return self.active.sample(now_ns)

    def done(self, now_ns: int) -> bool:
        """Whether the running trajectory (if any) has reached its last point."""
        return self.active is None or now_ns >= self.active.end_ns
