"""
In-process closed-loop evaluation of a policy on ``Gen3Sim`` (no ROS, no DDS, deterministic).

Does what the policy node does, tick by tick, on simulated time: every ``dt`` it renders the
camera, maps the measured (wrapped) joint positions into the training range
(``safety.map_measured_into_range``) and pushes the observation; every ``action_horizon`` ticks
it predicts and turns the prediction into a command with the node's
:class:`~kinova_policy_ros.policy.handover.Planner` (the same hand-over, re-timing and bounds),
handed to the same ``TrajectoryFollower`` the simulator node uses (stamp 0, replacing the
running trajectory, starting from the measured state). An optional ``command_delay_s`` models
inference + transport latency in simulated time.

It is faster than real time with a small model and gives the same numbers for the same seed, so
it suits smoke tests and quick evaluations; the ROS path (``sim_node`` + ``policy_node``) is the
end-to-end check.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kinova_policy_ros.core import kinematics as kin
from kinova_policy_ros.core.errors import ConfigError
from kinova_policy_ros.policy.handover import HandoverConfig, Planner
from kinova_policy_ros.policy.safety import CommandLimits, map_measured_into_range
from kinova_policy_ros.sim.env import Gen3Sim
from kinova_policy_ros.sim.smoothness import (
    boundary_jump_p95,
    handover_dips,
    jerk_rms,
    prediction_end_s,
    speed_dips,
)
from kinova_policy_ros.sim.trajectory import TrajectoryCommand, TrajectoryFollower
import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

#: The policy node's settings in the demo's closed loop over DDS (and in the evaluations that
#: stand for it): the simulator's camera is slower than a real one, so inputs may be 0.5 s old,
#: and the node may use the full Gen3 velocity limits (the real-arm default is 0.5).
DEMO_NODE_PARAMS: dict[str, float] = {'max_obs_age_s': 0.5, 'velocity_scale': 1.0}


class Policy(Protocol):
    """What the loop needs of a policy (``inference.PolicyRunner`` has it)."""

    dt: float
    action_horizon: int
    joint_names: tuple[str, ...]
    q_min: np.ndarray
    q_max: np.ndarray

    def reset(self) -> None: ...

    def push_observation(self, rgb: np.ndarray, depth_m: np.ndarray, q: np.ndarray) -> None: ...

    def predict(self) -> np.ndarray: ...


@dataclass
class ClosedLoopResult:
    """One closed-loop episode: outcome, and traces at every control tick."""

    seed: int
    target: FloatArray
    final_distance: float
    min_distance: float
    success: bool
    success_5cm: bool
    time_to_success_s: float | None
    chunk_velocity_jumps: FloatArray  # [plans - 1] max |Δ desired velocity| at a replacement
    times_s: FloatArray = field(repr=False)  # [ticks]
    q: FloatArray = field(repr=False)  # [ticks, 7] measured, wrapped like the driver
    distance: FloatArray = field(repr=False)  # [ticks]
    fine_t_s: FloatArray = field(repr=False, default_factory=lambda: np.zeros(0))  # [S]
    fine_dq: FloatArray = field(repr=False, default_factory=lambda: np.zeros((0, 7)))  # [S, 7]
    fine_dq_cmd: FloatArray = field(repr=False, default_factory=lambda: np.zeros((0, 7)))
    fine_distance: FloatArray = field(repr=False, default_factory=lambda: np.zeros(0))  # [S]
    replaced_at_s: FloatArray = field(repr=False, default_factory=lambda: np.zeros(0))
    fine_in_prediction: npt.NDArray[np.bool_] = field(
        repr=False, default_factory=lambda: np.zeros(0, dtype=bool)
    )  # [S] within the executed plan's predicted points

    @property
    def speed_dips(self) -> int:
        """Return the speed dips of the measured motion (``smoothness.speed_dips``)."""
        return speed_dips(self.fine_t_s, self.fine_dq, self.fine_distance)

    @property
    def handover_dips(self) -> int:
        """Return the speed dips the plans did not ask for (``smoothness.handover_dips``)."""
        return handover_dips(
            self.fine_t_s, self.fine_dq, self.fine_distance, self.fine_dq_cmd,
            self.fine_in_prediction,
        )

    @property
    def jerk_rms(self) -> float | None:
        """Return the RMS jerk of the measured motion (``smoothness.jerk_rms``)."""
        return jerk_rms(self.fine_t_s, self.fine_dq)

    def summary(self) -> dict[str, Any]:
        """JSON-friendly summary without the traces."""
        return {
            'seed': self.seed,
            'target': [float(v) for v in self.target],
            'final_distance': self.final_distance,
            'min_distance': self.min_distance,
            'success': self.success,
            'success_5cm': self.success_5cm,
            'time_to_success_s': self.time_to_success_s,
            'max_chunk_velocity_jump': float(np.max(self.chunk_velocity_jumps, initial=0.0)),
            'boundary_jump_p95': boundary_jump_p95(self.chunk_velocity_jumps.tolist()),
            'speed_dips': self.speed_dips,
            'handover_dips': self.handover_dips,
            'jerk_rms': self.jerk_rms,
        }


class _Controller:
    """The simulated controller side of the loop: delayed delivery, following, fine traces."""

    def __init__(self, sim: Gen3Sim, follower: TrajectoryFollower) -> None:
        self.sim = sim
        self.follower = follower
        self.pending: list[tuple[int, TrajectoryCommand]] = []  # (arrival ns, command)
        self.jumps: list[float] = []
        self.replaced_at: list[float] = []
        # t, dq, dq_cmd, distance, within the running plan's prediction
        self.trace: list[tuple[float, FloatArray, FloatArray, float, bool]] = []
        self.prediction_end_ns = -1  # when the running plan's prediction ends

    def advance(self, until_ns: int) -> None:
        """Run physics to ``until_ns``, delivering the commands that arrive on the way."""
        sim = self.sim
        while sim.time_ns < until_ns:
            now = sim.time_ns
            while self.pending and self.pending[0][0] <= now:
                _, cmd = self.pending.pop(0)
                before = self.follower.sample(now)
                self.follower.set_trajectory(
                    cmd, now, sim.joint_positions(), sim.joint_velocities()
                )
                after = self.follower.sample(now)
                if before is not None and after is not None:
                    self.jumps.append(float(np.max(np.abs(after[1] - before[1]))))
                    self.replaced_at.append(sim.time)
                end_s = prediction_end_s(cmd.time_from_start)
                self.prediction_end_ns = max(now, cmd.stamp_ns) + round(end_s * 1e9)
            desired = self.follower.sample(now)
            if desired is None:
                sim.hold()
            else:
                sim.step(desired[0], desired[1])
            dq_cmd = np.zeros(kin.NUM_JOINTS) if desired is None else desired[1]
            in_prediction = desired is not None and now <= self.prediction_end_ns
            self.trace.append(
                (sim.time, sim.joint_velocities(), dq_cmd, sim.distance(), in_prediction)
            )

    def fine(self) -> dict[str, npt.NDArray[Any]]:
        """Return the per-physics-step traces as arrays."""
        t, dq, dq_cmd, d, pred = zip(*self.trace) if self.trace else ((), (), (), (), ())
        return {
            'fine_t_s': np.asarray(t, dtype=np.float64),
            'fine_dq': np.asarray(dq, dtype=np.float64).reshape(-1, kin.NUM_JOINTS),
            'fine_dq_cmd': np.asarray(dq_cmd, dtype=np.float64).reshape(-1, kin.NUM_JOINTS),
            'fine_distance': np.asarray(d, dtype=np.float64),
            'replaced_at_s': np.asarray(self.replaced_at, dtype=np.float64),
            'fine_in_prediction': np.asarray(pred, dtype=bool),
        }


def run_policy_episode(
    sim: Gen3Sim,
    policy: Policy,
    seed: int,
    duration_s: float = 8.0,
    action_horizon: int | None = None,
    command_delay_s: float = 0.0,
    velocity_scale: float = 0.5,
    success_threshold: float = 0.03,
    handover: HandoverConfig | None = None,
    follower: TrajectoryFollower | None = None,
) -> ClosedLoopResult:
    """
    Reset ``sim`` to ``seed`` and let ``policy`` control it for ``duration_s`` simulated s.

    ``handover`` is the node's hand-over between plans (default ``HandoverConfig()``, the node's
    default), with the Gen3 velocity (× ``velocity_scale``) and acceleration limits;
    ``follower`` the simulated controller (default: ``TrajectoryFollower()``).
    """
    if tuple(policy.joint_names) != kin.JOINT_NAMES:
        raise ConfigError(
            f'policy joint_names {list(policy.joint_names)} must be {list(kin.JOINT_NAMES)}'
        )
    dt = float(policy.dt)
    horizon = int(action_horizon or policy.action_horizon)
    if not dt > 0 or horizon < 1:
        raise ConfigError(f'policy dt {dt} and action_horizon {horizon} must be positive')
    delay_ns = round(command_delay_s * 1e9)
    if not 0 <= delay_ns < round(dt * 1e9):
        raise ConfigError(f'command_delay_s {command_delay_s} must be in [0, dt = {dt})')
    limits = CommandLimits.gen3(velocity_scale=velocity_scale, acceleration=True)
    planner = Planner(limits, dt, horizon, handover or HandoverConfig())
    q_min = np.asarray(policy.q_min, dtype=np.float64)
    q_max = np.asarray(policy.q_max, dtype=np.float64)
    spec = sim.reset(seed)
    policy.reset()
    ctrl = _Controller(sim, follower if follower is not None else TrajectoryFollower())
    ctrl.follower.reset()
    times, qs, dists = [], [], []
    n_ticks = round(duration_s / dt)
    ticks_until_plan = 0
    for k in range(n_ticks + 1):
        ctrl.advance(round(k * dt * 1e9))
        q_meas = sim.joint_positions()
        times.append(sim.time)
        qs.append(q_meas)
        dists.append(sim.distance())
        if k == n_ticks:
            break
        rgb, depth = sim.render()
        q_model = map_measured_into_range(q_meas, q_min, q_max, kin.CONTINUOUS)
        policy.push_observation(rgb, depth, q_model)
        ticks_until_plan -= 1
        if ticks_until_plan > 0:
            continue
        ticks_until_plan = horizon
        pred = np.asarray(policy.predict(), dtype=np.float64)
        plan = planner.plan(pred, q_meas, sim.time_ns, sim.time_ns + delay_ns)
        cmd = TrajectoryCommand(
            joint_names=kin.JOINT_NAMES,
            time_from_start=(plan.times_ns * 1e-9).tolist(),
            positions=plan.positions.tolist(),
            velocities=plan.velocities.tolist(),
        )
        ctrl.pending.append((sim.time_ns + delay_ns, cmd))
    distance = np.asarray(dists)
    reached = np.nonzero(distance <= success_threshold)[0]
    final = float(distance[-1])
    return ClosedLoopResult(
        seed=seed,
        target=spec.target.copy(),
        final_distance=final,
        min_distance=float(distance.min()),
        success=final <= success_threshold,
        success_5cm=final <= 0.05,
        time_to_success_s=float(times[reached[0]]) if reached.size else None,
        chunk_velocity_jumps=np.asarray(ctrl.jumps),
        times_s=np.asarray(times),
        q=np.asarray(qs),
        distance=distance,
        **ctrl.fine(),
    )


def evaluate(
    sim: Gen3Sim, policy: Policy, seeds: Sequence[int], **kwargs: Any
) -> list[ClosedLoopResult]:
    """Run ``run_policy_episode`` for every seed (keyword arguments are passed on)."""
    return [run_policy_episode(sim, policy, seed, **kwargs) for seed in seeds]


class ExpertPolicy:
    """
    The scripted expert behind the ``Policy`` interface (a reference and a test double).

    Every prediction re-plans from the last observed joint positions to the episode's target and
    returns the plan sampled at ``(i + 1)·dt`` for ``pred_horizon`` steps.
    """

    joint_names = kin.JOINT_NAMES

    def __init__(self, sim: Gen3Sim, dt: float = 1 / 15, pred_horizon: int = 12) -> None:
        self.sim = sim
        self.dt = dt
        self.pred_horizon = pred_horizon
        self.action_horizon = pred_horizon // 2
        self.q_min = np.full(7, -np.inf)
        self.q_max = np.full(7, np.inf)
        self._q: FloatArray | None = None
        self._plan: Any = None

    def reset(self) -> None:
        """Forget the plan (a new episode)."""
        self._q = None
        self._plan = None

    def push_observation(self, rgb: np.ndarray, depth_m: np.ndarray, q: np.ndarray) -> None:
        """Keep the joint positions (the expert does not look at the images)."""
        self._q = np.asarray(q, dtype=np.float64)

    def predict(self) -> np.ndarray:
        """Return ``[pred_horizon, 7]`` joint targets along a plan from the measured state."""
        from kinova_policy_ros.sim.expert import ExpertConfig, plan_reach

        assert self._q is not None
        if self._plan is None:
            cfg = ExpertConfig(tcp_offset=self.sim.scene.tcp_offset)
            self._plan = (0.0, plan_reach(self._q, self.sim.target_position(), cfg))
        t0, plan = self._plan
        t = self.sim.time - t0 + (np.arange(self.pred_horizon) + 1) * self.dt
        return np.stack([np.interp(t, plan.times, plan.positions[:, j]) for j in range(7)], axis=1)
