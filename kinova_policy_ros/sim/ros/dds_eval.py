"""
Closed-loop evaluation of a checkpoint over DDS: ``sim_node`` + ``policy_node`` as processes.

The end-to-end check of ``make demo``: the simulator and the policy node run as two separate
processes exactly as they would next to a robot (``python -m ... --ros-args -p ...``, logs in
``out_dir``), they talk over DDS, and a helper node in this process drives the episodes and
records what happens. For every seed:

1. the simulator is reset to the seed (``seed`` parameter + ``/sim_node/reset_to_seed``),
2. the policy's observation buffer is reset (``/kinova_policy/reset``) and the commands are
   enabled (``/kinova_policy/enable``),
3. ``duration_s`` of wall time is recorded: ``/joint_states`` (mapped by name), every command
   on ``/joint_trajectory_controller/joint_trajectory``, ``/kinova_policy/predicted_trajectory``
   (counted), ``/sim_node/task_state`` (distance, target, end-effector position) and the policy
   node's ``/diagnostics``,
4. the commands are disabled again (and the node is seen ``disabled`` on ``/diagnostics``
   before the next reset, so no late command reaches the next episode).

Metrics per episode follow :mod:`kinova_policy_ros.sim.closed_loop`: the final and minimum
distance end effector -> target (the simulator's ``task_state``), success = final distance
within 3 cm / 5 cm, the time from enabling to the first distance within 3 cm, and the velocity
jump at each chunk boundary. The jump is defined as in ``closed_loop``: when a command replaces
the running trajectory, max over joints of |desired velocity of the running trajectory at that
instant - desired velocity of the new one (the measured velocity, where the controller
re-anchors)|. It is computed by replaying the received commands, at their receipt times, with
the measured ``/joint_states`` through the same ``TrajectoryFollower`` the simulator uses.
Inference latency (observation tick -> command published, p50/p99 over the node's last 500
plans) is what the node reports on ``/diagnostics``: per episode its report right after the
episode, in the summary its last report (with the default 8 s episodes, 500 plans cover about
25 episodes). ``policy_problem_reports`` counts the node's ``stale input`` / ``invalid input`` /
``error`` reports during an episode (each one means commands paused).

Everything goes to ``out_dir/closed_loop.json`` (``{'episodes': [...], 'summary': {...}}``,
traces included; ``summary['per_episode']`` has the scalars only) and, by default, the PNGs of
``sim.eval_plots``. This module is a ROS adapter (it imports rclpy); its parts live in
``sim.ros.processes`` (the node processes), ``sim.ros.eval_recorder`` (the harness node),
``sim.ros.eval_episode`` (one episode) and ``sim.eval_metrics`` (the metrics, no ROS). Their
public names are importable from here too.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
import json
from pathlib import Path
import threading
import time
from typing import Any

from kinova_policy_ros.core.errors import ConfigError
from kinova_policy_ros.data.schema import atomic_write
from kinova_policy_ros.sim import camera as sim_camera
from kinova_policy_ros.sim import eval_plots
from kinova_policy_ros.sim.eval_metrics import (
    chunk_velocity_jumps,
    compact,
    INPUT_PROBLEM_STATES,
    progress_line,
    SUCCESS_3CM,
    SUCCESS_5CM,
    summarize,
    summary_line,
)
from kinova_policy_ros.sim.eval_records import EpisodeResult, Summary, TRACE_KEYS
from kinova_policy_ros.sim.ros.eval_episode import (
    command_dict,
    episode_result,
    EpisodeSettings,
    run_episode,
    SERVICE_TIMEOUT_S,
)
from kinova_policy_ros.sim.ros.eval_recorder import (
    EvalRecorder,
    POLICY_STATUS_NAME,
    SIM_NODE_NAME,
)
from kinova_policy_ros.sim.ros.processes import (
    ChildProcess,
    log_tail,
    number_param,
    policy_node_command,
    ProcessGroup,
    ros_param_arg,
    sim_command,
)
from kinova_policy_ros.sim.ros.services import wait_for
import rclpy
from rclpy.executors import SingleThreadedExecutor

__all__ = [
    'INPUT_PROBLEM_STATES',
    'POLICY_STATUS_NAME',
    'SERVICE_TIMEOUT_S',
    'SIM_NODE_NAME',
    'STARTUP_TIMEOUT_S',
    'SUCCESS_3CM',
    'SUCCESS_5CM',
    'TRACE_KEYS',
    'ChildProcess',
    'EvalRecorder',
    'chunk_velocity_jumps',
    'command_dict',
    'compact',
    'episode_result',
    'evaluate_over_dds',
    'log_tail',
    'policy_node_command',
    'ros_param_arg',
    'sim_command',
    'summarize',
    'wait_until_ready',
    'write_results',
]

STARTUP_TIMEOUT_S = 120.0
"""Time both processes get to come up (torch import and checkpoint load on a busy CPU)."""


@dataclass(frozen=True)
class _Setup:
    """The checked arguments of an evaluation."""

    checkpoint: Path
    seeds: list[int]
    out_dir: Path
    policy_params: dict[str, object]
    sim_params: dict[str, object]
    episode: EpisodeSettings


def _check_arguments(
    checkpoint: Path,
    seeds: Sequence[int],
    out_dir: Path,
    duration_s: float,
    policy_params: Mapping[str, object] | None,
    sim_params: Mapping[str, object] | None,
) -> _Setup:
    """Validate the arguments of ``evaluate_over_dds`` (ConfigError naming the bad one)."""
    seed_list = [int(s) for s in seeds]
    if not seed_list:
        raise ConfigError('evaluate_over_dds: seeds must not be empty')
    if not duration_s > 0:
        raise ConfigError(f'evaluate_over_dds: duration_s must be > 0, got {duration_s!r}')
    checkpoint = Path(checkpoint)
    if not checkpoint.is_dir():
        raise ConfigError(f'evaluate_over_dds: checkpoint {checkpoint} is not a directory')
    pparams = {**dict(policy_params or {}), 'enabled_on_start': False}
    pparams.pop('checkpoint', None)
    sparams = dict(sim_params or {})
    profile = sim_camera.camera_profile(
        str(sparams.setdefault('camera_profile', sim_camera.DEFAULT_PROFILE))
    )
    camera_hz = number_param('camera_rate_hz', sparams.get('camera_rate_hz', profile.rate_hz))
    episode = EpisodeSettings(
        duration_s=duration_s,
        camera_period_s=1.0 / camera_hz,
        angle_wraparound=bool(sparams.get('angle_wraparound', False)),
    )
    return _Setup(checkpoint, seed_list, Path(out_dir), pparams, sparams, episode)


def _node_processes(setup: _Setup) -> ProcessGroup:
    """``sim_node`` (at the first seed) and ``policy_node``, logs in ``out_dir``."""
    sim = ChildProcess(
        'sim_node', sim_command(setup.seeds[0], setup.sim_params), setup.out_dir / 'sim_node.log'
    )
    policy = ChildProcess(
        'policy_node',
        policy_node_command(setup.checkpoint.resolve(), setup.policy_params),
        setup.out_dir / 'policy_node.log',
    )
    return ProcessGroup([sim, policy])


def wait_until_ready(
    recorder: EvalRecorder,
    processes: ProcessGroup,
    out_dir: Path,
    timeout_s: float = STARTUP_TIMEOUT_S,
) -> None:
    """Wait for joint states, a task state and the policy node's ``disabled`` report."""

    def ready() -> bool:
        processes.check_alive()
        diag = recorder.last_diag
        return (
            recorder.joint_states_seen > 0
            and recorder.last_task is not None
            and diag is not None
            and diag[1].get('state') == 'disabled'
        )

    wait_for(ready, timeout_s, f'sim_node and policy_node to come up (logs in {out_dir})')


@dataclass
class _Run:
    """What the episodes produced."""

    episodes: list[EpisodeResult]
    startup_s: float | None = None
    last_diag: dict[str, str] | None = None


def _run_episodes(
    setup: _Setup, processes: ProcessGroup, started: float, progress: bool
) -> _Run:
    """Start the harness node, wait for both nodes, run every episode; stop the node."""
    run = _Run(episodes=[])
    context = rclpy.Context()
    executor: SingleThreadedExecutor | None = None
    spinner: threading.Thread | None = None
    try:
        rclpy.init(context=context)
        recorder = EvalRecorder(context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(recorder)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        if progress:
            print(
                'closed loop over DDS: starting sim_node and policy_node '
                f'(logs in {setup.out_dir})',
                flush=True,
            )
        wait_until_ready(recorder, processes, setup.out_dir)
        run.startup_s = time.monotonic() - started
        for index, seed in enumerate(setup.seeds):
            result = run_episode(recorder, seed, setup.episode, processes.check_alive)
            run.episodes.append(result)
            if progress:
                print(progress_line(result, index + 1, len(setup.seeds)), flush=True)
        run.last_diag = recorder.last_diag_values()
    finally:
        if executor is not None:
            executor.shutdown(timeout_sec=5.0)
        rclpy.try_shutdown(context=context)
        if spinner is not None:
            spinner.join(timeout=5.0)
    return run


def write_results(path: Path, results: Mapping[str, Any]) -> Path:
    """Write ``results`` as JSON, atomically."""
    text = json.dumps(results, indent=1, allow_nan=False)

    def write(tmp: Path) -> None:
        tmp.write_text(text)
        tmp.chmod(0o644)

    return atomic_write(path, write)


def _report(
    run: _Run, processes: ProcessGroup, out_dir: Path, wall_time_s: float, plots: bool
) -> dict[str, Any]:
    """Summarize, write ``closed_loop.json`` and (``plots``) the PNGs; return the results."""
    summary: Summary = summarize(run.episodes, wall_time_s, run.last_diag, run.startup_s)
    summary['processes'] = processes.info()
    results: dict[str, Any] = {'episodes': run.episodes, 'summary': summary}
    write_results(out_dir / 'closed_loop.json', results)
    if plots:
        summary['plots'] = [p.name for p in eval_plots.write_all(results, out_dir)]
        write_results(out_dir / 'closed_loop.json', results)
    return results


def evaluate_over_dds(
    checkpoint: Path,
    seeds: Sequence[int],
    out_dir: Path,
    *,
    duration_s: float = 8.0,
    policy_params: Mapping[str, object] | None = None,
    sim_params: Mapping[str, object] | None = None,
    progress: bool = True,
    plots: bool = True,
    camera_profile: str | None = None,
) -> dict[str, Any]:
    """
    Evaluate ``checkpoint`` in closed loop: ``sim_node`` and ``policy_node`` processes, DDS.

    :param checkpoint: the checkpoint directory for ``policy_node``.
    :param seeds: one episode per seed, in this order.
    :param out_dir: receives ``sim_node.log``, ``policy_node.log`` and ``closed_loop.json``
        (``{'episodes': [...], 'summary': {...}}`` with all traces).
    :param duration_s: wall time each episode runs with the commands enabled.
    :param policy_params: extra ``policy_node`` parameters (``enabled_on_start`` is always
        false: the harness enables the node per episode).
    :param sim_params: extra ``sim_node`` parameters (``image_width``, ``camera_rate_hz``, ...).
    :param camera_profile: the simulator's camera profile (``small``, ``kinova_vision``;
        default: ``sim_params``' or ``small``); it sets the camera rate unless
        ``camera_rate_hz`` is given.
    :param progress: print one line per episode.
    :param plots: also write the PNGs of ``sim.eval_plots.write_all`` into ``out_dir``
        (``closed_loop_success.png``, ``closed_loop_ee_paths.png``,
        ``closed_loop_joints_seed<seed>.png`` of the first three episodes).
    :return: ``{'episodes': [per-episode dicts, traces included], 'summary': {...}}``.

    The DDS domain is whatever the environment says (``ROS_DOMAIN_ID`` ...): both processes
    inherit it. A process that exits early raises :class:`KinovaPolicyError` with the end of its
    log; both are stopped (SIGINT, then SIGKILL) whatever happens.
    """
    started = time.monotonic()
    if camera_profile is not None:
        sim_params = {**dict(sim_params or {}), 'camera_profile': camera_profile}
    setup = _check_arguments(checkpoint, seeds, out_dir, duration_s, policy_params, sim_params)
    setup.out_dir.mkdir(parents=True, exist_ok=True)
    processes = _node_processes(setup)
    with processes:
        run = _run_episodes(setup, processes, started, progress)
    results = _report(run, processes, setup.out_dir, time.monotonic() - started, plots)
    if progress:
        print(summary_line(results['summary']), flush=True)
    return results
