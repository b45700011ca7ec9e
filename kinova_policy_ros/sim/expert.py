"""
Scripted reaching expert: damped-least-squares IK on ``kinematics`` (pure numpy, no ROS).

``plan_reach`` turns a measured joint state and a target position into a smooth, multi-point
joint trajectory (positions + velocities, zero velocity at the end) that takes the tool centre
point (``ExpertConfig.tcp_offset`` along the tool z, between the fingertips: where success is
measured)

1. from where it is to a pre-grasp point ``pregrasp_height`` above the target, turning the tool to
   point straight down (minimum-jerk in position and orientation), then
2. straight down to the target (minimum-jerk),

with every joint velocity below ``max_speed_fraction`` of the Gen3 limits (the time axis is
stretched when needed). The plan starts at the measured positions (continuous joints as
measured, i.e. wrapped), so a joint_trajectory_controller follows it without a 2π turn.
``rollout_expert`` runs it on a ``Gen3Sim`` through the same ``TrajectoryFollower`` the simulator
node uses.
"""

from collections.abc import Callable
from dataclasses import dataclass

from kinova_policy_ros.core import kinematics as kin
from kinova_policy_ros.core.errors import ConfigError
from kinova_policy_ros.sim.env import Gen3Sim, tcp_point
from kinova_policy_ros.sim.mjcf import TCP_OFFSET_2F85
from kinova_policy_ros.sim.trajectory import TrajectoryCommand, TrajectoryFollower
import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# tool pointing straight down: the home orientation (tool along +x) pitched by +90 deg about y
_R_DOWN: FloatArray = kin.rpy_to_matrix([0.0, np.pi / 2, 0.0]) @ kin.fk_matrix(kin.HOME)[:3, :3]


@dataclass(frozen=True)
class ExpertConfig:
    """Parameters of the scripted expert."""

    pregrasp_height: float = 0.12
    cartesian_speed: float = 0.25
    min_approach_time: float = 1.5
    min_descent_time: float = 0.8
    # below the policy node's default velocity_scale (0.5), so a learned policy can keep up
    max_speed_fraction: float = 0.45
    waypoint_dt: float = 0.05
    damping: float = 0.03
    orientation_weight: float = 0.3
    posture_gain: float = 0.2
    ik_iterations: int = 4
    limit_margin: float = 0.1
    column_tolerance: float = 0.02
    # Within this horizontal distance of the target, and no higher than the pre-grasp point, the
    # reach goes straight to the target: a correction near the target never climbs back up.
    direct_radius: float = 0.12
    # the point aimed at the target: metres along the tool z from end_effector_link
    tcp_offset: float = TCP_OFFSET_2F85


@dataclass(frozen=True)
class JointPlan:
    """A joint trajectory: ``times [P]`` s from its start, ``positions``/``velocities [P, 7]``."""

    times: FloatArray
    positions: FloatArray
    velocities: FloatArray

    @property
    def duration(self) -> float:
        """Time of the last point, s."""
        return float(self.times[-1])

    def to_command(self, stamp_ns: int = 0) -> TrajectoryCommand:
        """As a ROS-free trajectory command (all points, with velocities)."""
        return TrajectoryCommand(
            joint_names=kin.JOINT_NAMES,
            time_from_start=self.times.tolist(),
            positions=self.positions.tolist(),
            velocities=self.velocities.tolist(),
            stamp_ns=stamp_ns,
        )


def _min_jerk(s: FloatArray) -> FloatArray:
    return 10 * s**3 - 15 * s**4 + 6 * s**5


def _rotvec(r: FloatArray) -> FloatArray:
    """Axis-angle vector of a rotation matrix."""
    cos = np.clip((np.trace(r) - 1) / 2, -1.0, 1.0)
    angle = float(np.arccos(cos))
    v = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]], dtype=np.float64)
    if angle < 1e-9:
        half: FloatArray = v / 2
        return half
    if np.pi - angle < 1e-6:
        # 180 deg: axis from the symmetric part
        axis = np.sqrt(np.clip((np.diag(r) + 1) / 2, 0.0, None))
        i = int(np.argmax(axis))
        axis[[j for j in range(3) if j != i]] *= np.sign(r[i, [j for j in range(3) if j != i]])
        flipped: FloatArray = axis / np.linalg.norm(axis) * angle
        return flipped
    rotvec: FloatArray = v / (2 * np.sin(angle)) * angle
    return rotvec


def _exp_rot(v: FloatArray) -> FloatArray:
    angle = float(np.linalg.norm(v))
    if angle < 1e-12:
        return np.eye(3)
    k = v / angle
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    rot: FloatArray = np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx
    return rot


def flange_for_tcp(tcp: npt.ArrayLike, rot: FloatArray, offset: float) -> FloatArray:
    """Position of ``end_effector_link`` that puts the TCP at ``tcp`` with orientation ``rot``."""
    flange: FloatArray = np.asarray(tcp, dtype=np.float64) - offset * rot[:, 2]
    return flange


def ik_step(
    q: FloatArray,
    p_des: FloatArray,
    r_des: FloatArray,
    q_rest: FloatArray,
    cfg: ExpertConfig,
) -> FloatArray:
    """One damped-least-squares update of ``q`` towards the pose ``(p_des, r_des)``."""
    t = kin.fk_matrix(q)
    err = np.concatenate([p_des - t[:3, 3], cfg.orientation_weight * _rotvec(r_des @ t[:3, :3].T)])
    jac = kin.jacobian(q)
    jac[3:] *= cfg.orientation_weight
    jjt = jac @ jac.T + cfg.damping**2 * np.eye(6)
    j_pinv = jac.T @ np.linalg.solve(jjt, np.eye(6))
    null = np.eye(kin.NUM_JOINTS) - j_pinv @ jac
    posture = q_rest - q
    posture[kin.CONTINUOUS] = kin.wrap_to_pi(posture[kin.CONTINUOUS])
    dq = j_pinv @ err + null @ (cfg.posture_gain * posture)
    return kin.clip_to_limits(q + dq, margin=cfg.limit_margin)


def _retime(
    times: FloatArray, positions: FloatArray, vmax: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Stretch the intervals where a joint would exceed ``vmax``; return times and velocities."""
    dts = np.diff(times)
    for _ in range(4):
        t = np.concatenate([[0.0], np.cumsum(dts)])
        vel = np.gradient(positions, t, axis=0)
        vel[0] = 0.0
        vel[-1] = 0.0
        ratio = np.abs(vel) / vmax
        need = np.maximum(ratio.max(axis=1)[:-1], ratio.max(axis=1)[1:])  # per interval
        seg = np.abs(np.diff(positions, axis=0)) / dts[:, None] / vmax
        need = np.maximum(need, seg.max(axis=1))
        if need.max() <= 1.0:
            break
        dts = dts * np.maximum(need * 1.02, 1.0)
    t = np.concatenate([[0.0], np.cumsum(dts)])
    vel = np.gradient(positions, t, axis=0)
    vel[0] = 0.0
    vel[-1] = 0.0
    scale = max(1.0, float((np.abs(vel) / vmax).max()))
    return t * scale, vel / scale


def plan_reach(
    q_start: npt.ArrayLike, target: npt.ArrayLike, config: ExpertConfig | None = None
) -> JointPlan:
    """
    Plan a reach from the joint positions ``q_start`` to the target point (base frame).

    ``target`` is where the TCP goes. When the TCP is already near the target (within
    ``direct_radius`` horizontally, below the pre-grasp height + ``column_tolerance``) the
    approach phase is skipped and the reach goes straight to the target, so re-planning from
    any state of an episode continues the reach instead of restarting it.
    """
    cfg = config or ExpertConfig()
    q0 = np.asarray(q_start, dtype=np.float64).copy()
    goal = np.asarray(target, dtype=np.float64)
    t0 = kin.fk_matrix(q0)
    p0, r0 = tcp_point(t0, cfg.tcp_offset), t0[:3, :3]
    pre = goal + np.array([0.0, 0.0, cfg.pregrasp_height])
    in_column = (
        np.linalg.norm(p0[:2] - goal[:2]) < max(cfg.column_tolerance, cfg.direct_radius)
        and p0[2] < pre[2] + cfg.column_tolerance
    )
    poses: list[tuple[FloatArray, FloatArray]] = []
    segment_times: list[FloatArray] = []
    start_b, r_b = (p0, r0) if in_column else (pre, _R_DOWN)
    if not in_column:
        d_a = float(np.linalg.norm(pre - p0))
        dur_a = max(cfg.min_approach_time, 1.875 * d_a / cfg.cartesian_speed)
        n_a = max(2, round(dur_a / cfg.waypoint_dt))
        rot_a = _rotvec(_R_DOWN @ r0.T)
        for s in _min_jerk(np.linspace(0.0, 1.0, n_a + 1)[1:]):
            poses.append((p0 + s * (pre - p0), _exp_rot(s * rot_a) @ r0))
        segment_times.append(np.linspace(0.0, dur_a, n_a + 1)[1:])
    d_b = float(np.linalg.norm(goal - start_b))
    dur_b = max(cfg.min_descent_time, 1.875 * d_b / cfg.cartesian_speed)
    n_b = max(2, round(dur_b / cfg.waypoint_dt))
    rot_b = _rotvec(_R_DOWN @ r_b.T)
    for s in _min_jerk(np.linspace(0.0, 1.0, n_b + 1)[1:]):
        poses.append((start_b + s * (goal - start_b), _exp_rot(s * rot_b) @ r_b))
    offset = segment_times[0][-1] if segment_times else 0.0
    segment_times.append(offset + np.linspace(0.0, dur_b, n_b + 1)[1:])
    times = np.concatenate([[0.0], *segment_times])
    qs = [q0]
    q = q0.copy()
    for p_des, r_des in poses:
        flange = flange_for_tcp(p_des, r_des, cfg.tcp_offset)
        for _ in range(cfg.ik_iterations):
            q = ik_step(q, flange, r_des, q0, cfg)
        qs.append(q.copy())
    # final polish on the goal
    goal_flange = flange_for_tcp(goal, _R_DOWN, cfg.tcp_offset)
    for _ in range(20):
        q = ik_step(q, goal_flange, _R_DOWN, q0, cfg)
    qs[-1] = q
    positions = np.stack(qs)
    times, velocities = _retime(times, positions, cfg.max_speed_fraction * kin.VELOCITY_LIMITS)
    return JointPlan(times=times[1:], positions=positions[1:], velocities=velocities[1:])


@dataclass(frozen=True)
class DemoVariation:
    """
    Departures from the plain home-to-target reach (all off by default).

    A policy trained on plain reaches only ever sees the arm at rest at home or on the target:
    "the arm stopped" then means "arrived", and a policy that stops short believes it has
    arrived (measured: its goal prediction read ~0 cm while 3-25 cm off). Two variations break
    that shortcut, each labelled by the expert re-planning from the state it creates:

    - *recovery starts*: the episode starts at rest near the target instead of at home (tool
      down, up to ``recovery_offset_m`` away horizontally, ``recovery_height_m`` above it; with
      ``recovery_tilt_deg`` the tool is tilted up to that many degrees from straight down about
      a random horizontal axis, so the demonstrations also show the tool being set upright
      close to the target);
    - *pauses*: the reach stops for ``pause_s`` at a random point of the approach, then the
      expert re-plans from where the arm stands.

    The draw of every episode is a function of its seed.
    """

    recovery_fraction: float = 0.0
    recovery_offset_m: float = 0.10
    recovery_height_m: tuple[float, float] = (0.02, 0.15)
    recovery_tilt_deg: float = 0.0
    pause_fraction: float = 0.0
    pause_s: tuple[float, float] = (0.3, 1.0)

    def __post_init__(self) -> None:
        for name in ('recovery_fraction', 'pause_fraction'):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f'DemoVariation.{name}: must be in [0, 1], got {value!r}')
        if not 0.0 <= self.recovery_tilt_deg <= 45.0:
            raise ConfigError(
                'DemoVariation.recovery_tilt_deg: must be in [0, 45], '
                f'got {self.recovery_tilt_deg!r}'
            )
        if not self.recovery_offset_m >= 0.0:
            raise ConfigError(
                f'DemoVariation.recovery_offset_m: must be >= 0, got {self.recovery_offset_m!r}'
            )
        for name in ('recovery_height_m', 'pause_s'):
            lo, hi = getattr(self, name)
            if not 0.0 <= lo <= hi:
                raise ConfigError(
                    f'DemoVariation.{name}: must be (low, high) with 0 <= low <= high, '
                    f'got {getattr(self, name)!r}'
                )

    @property
    def active(self) -> bool:
        """Whether any variation can happen."""
        return self.recovery_fraction > 0.0 or self.pause_fraction > 0.0


@dataclass(frozen=True)
class EpisodeVariation:
    """What :meth:`DemoVariation` drew for one episode."""

    start_q: FloatArray | None  # [7] recovery start, None = the seed's own start
    pause_at: float | None  # fraction of the first plan's duration, None = no pause
    pause_s: float


def draw_variation(
    seed: int,
    q0: npt.ArrayLike,
    target: npt.ArrayLike,
    variation: DemoVariation,
    config: ExpertConfig | None = None,
) -> EpisodeVariation:
    """Draw the variation of episode ``seed`` (start ``q0``, ``target``), deterministically."""
    cfg = config or ExpertConfig()
    rng = np.random.default_rng([int(seed), 0x5EED])
    q_rest = np.asarray(q0, dtype=np.float64)
    goal = np.asarray(target, dtype=np.float64)
    start_q = None
    if rng.random() < variation.recovery_fraction:
        angle = rng.uniform(0.0, 2.0 * np.pi)
        radius = variation.recovery_offset_m * np.sqrt(rng.random())
        height = rng.uniform(*variation.recovery_height_m)
        point = goal + np.array([radius * np.cos(angle), radius * np.sin(angle), height])
        rot = _R_DOWN
        if variation.recovery_tilt_deg > 0.0:  # drawn only then: other draws stay as they were
            axis = rng.uniform(0.0, 2.0 * np.pi)
            tilt = np.radians(variation.recovery_tilt_deg) * rng.uniform(0.0, 1.0)
            rot = kin.axis_angle_to_matrix([np.cos(axis), np.sin(axis), 0.0], tilt) @ _R_DOWN
        flange = flange_for_tcp(point, rot, cfg.tcp_offset)
        q = q_rest.copy()
        for _ in range(60):
            q = ik_step(q, flange, rot, q_rest, cfg)
        start_q = q
    pause_at = float(rng.uniform(0.15, 0.85)) if rng.random() < variation.pause_fraction else None
    return EpisodeVariation(
        start_q=start_q, pause_at=pause_at, pause_s=float(rng.uniform(*variation.pause_s))
    )


def stop_plan(q: npt.ArrayLike, dq: npt.ArrayLike, duration: float) -> JointPlan:
    """
    Stop from the measured state and stay at rest until ``duration`` (a pause).

    Brakes over 0.2 s to where a linear deceleration from ``dq`` ends, then holds there.
    """
    brake = min(0.2, duration)
    q_stop = np.asarray(q, dtype=np.float64) + 0.5 * brake * np.asarray(dq, dtype=np.float64)
    times = np.array([brake, max(duration, brake + 1e-3)])
    return JointPlan(
        times=times, positions=np.stack([q_stop, q_stop]), velocities=np.zeros((2, q_stop.size))
    )


@dataclass
class RolloutResult:
    """Outcome of one expert episode."""

    seed: int
    final_distance: float
    success: bool
    duration: float


def rollout_expert(
    sim: Gen3Sim,
    seed: int,
    config: ExpertConfig | None = None,
    settle_time: float = 0.5,
    control_dt: float = 0.002,
    on_tick: Callable[[Gen3Sim, int], None] | None = None,
) -> RolloutResult:
    """
    Run one expert episode offline, without ROS.

    Resets ``sim`` to ``seed``, plans from the measured state, follows the plan through a
    ``TrajectoryFollower`` and holds ``settle_time`` after its end.

    ``on_tick(sim, now_ns)`` is called before every control step (and once at the end), with
    ``now_ns`` the simulated time: recorders sample the state and render there.
    """
    spec = sim.reset(seed)
    follower = TrajectoryFollower()
    config = config or ExpertConfig(tcp_offset=sim.scene.tcp_offset)
    plan = plan_reach(sim.joint_positions(), spec.target, config)
    follower.set_trajectory(
        plan.to_command(), sim.time_ns, sim.joint_positions(), sim.joint_velocities()
    )
    end = plan.duration + settle_time
    steps = round(end / control_dt)
    for _ in range(steps):
        now = sim.time_ns
        if on_tick is not None:
            on_tick(sim, now)
        desired = follower.sample(now)
        assert desired is not None
        sim.step(desired[0], desired[1], control_dt)
    if on_tick is not None:
        on_tick(sim, sim.time_ns)
    return RolloutResult(
        seed=seed, final_distance=sim.distance(), success=sim.success(), duration=sim.time
    )
