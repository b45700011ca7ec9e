"""
The records and results of a closed-loop evaluation over DDS (typed dictionaries, no logic).

What the harness records per episode (:class:`EpisodeRecord`, from
:mod:`kinova_policy_ros.sim.ros.eval_recorder`), what :mod:`kinova_policy_ros.sim.eval_metrics`
makes of it (:class:`EpisodeResult` per episode, :class:`Summary` over the episodes) and how the
node processes were started (:class:`ProcessInfo`). Times are seconds since the episode's
enable unless a name says ns.
"""

from typing import Any, TypedDict

from kinova_policy_ros.sim.trajectory import TrajectoryCommand

TRACE_KEYS = ('ee_path', 'task_t_s', 'distance_trace', 'measured', 'commands')
"""Per-episode entries that are traces (in ``closed_loop.json``, not in the summary)."""

JointSample = tuple[int, list[float], list[float]]
"""``(receipt ns, positions, velocities)`` in ``kin.JOINT_NAMES`` order (velocities may be [])."""


class EpisodeRecord(TypedDict):
    """What the harness received during one episode, each entry with its receipt time (ns)."""

    joints: list[JointSample]
    commands: list[tuple[int, TrajectoryCommand]]
    tasks: list[tuple[int, dict[str, Any]]]
    diagnostics: list[tuple[int, dict[str, str]]]
    predicted: int


class CommandEntry(TypedDict):
    """A received command as JSON-friendly lists (the message's own joint order)."""

    t_s: float
    joint_names: list[str]
    time_from_start: list[float]
    positions: list[list[float]]
    velocities: list[list[float]]
    stamp_ns: int


class MeasuredTrace(TypedDict):
    """The measured joint states of an episode, ``kin.JOINT_NAMES`` order."""

    joint_names: list[str]
    t_s: list[float]
    positions: list[list[float]]
    velocities: list[list[float]]


class EpisodeResult(TypedDict):
    """One episode's result (distances in metres, velocities in rad/s, times in seconds)."""

    seed: int
    sim_episode: int
    target: list[float]
    final_distance: float
    min_distance: float
    success_3cm: bool
    success_5cm: bool
    final_distance_flange: float | None
    success_3cm_flange: bool | None
    success_5cm_flange: bool | None
    time_to_success_s: float | None
    duration_s: float
    commands_received: int
    commands_published: int | None
    commands_rejected_by_sim: int
    last_rejection: str
    commands_rejected_in_replay: int
    predicted_received: int
    chunk_velocity_jumps: list[float]
    max_chunk_velocity_jump: float
    boundary_jump_p95: float | None
    speed_dips: int | None
    handover_dips: int | None
    jerk_rms: float | None
    inference_latency_p50_ms: float | None
    inference_latency_p99_ms: float | None
    points_dropped_for_latency: int | None
    policy_problem_reports: int
    first_policy_problem: str
    ee_path: list[list[float]]
    task_t_s: list[float]
    distance_trace: list[float]
    measured: MeasuredTrace
    commands: list[CommandEntry]


class ProcessInfo(TypedDict):
    """A node process of the evaluation, as the summary reports it."""

    pid: int | None
    returncode: int | None
    log: str


class _SummaryFields(TypedDict):
    """The aggregate of an evaluation (``closed_loop.json['summary']``)."""

    episodes: int
    seeds: list[int]
    success_3cm: float | None
    success_5cm: float | None
    mean_final_distance: float | None
    median_final_distance: float | None
    success_3cm_flange: float | None
    success_5cm_flange: float | None
    median_final_distance_flange: float | None
    commands_received: int
    policy_problem_reports: int
    chunk_boundaries: int
    boundary_jump_median: float | None
    boundary_jump_p95: float | None
    boundary_jump_max: float | None
    speed_dips: int | None
    handover_dips: int | None
    jerk_rms_median: float | None
    time_to_target_median_s: float | None
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    episode_duration_s: float | None
    startup_s: float | None
    wall_time_s: float
    per_episode: list[dict[str, Any]]


class Summary(_SummaryFields, total=False):
    """The summary with what the DDS evaluation adds (Python 3.10 has no NotRequired)."""

    processes: dict[str, ProcessInfo]
    plots: list[str]
