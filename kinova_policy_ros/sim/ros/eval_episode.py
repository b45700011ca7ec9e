"""
One episode of a closed-loop evaluation over DDS, driven through the harness node.

For a seed:

1. the simulator is reset to the seed (``seed`` parameter + ``/sim_node/reset_to_seed``) and
   its task state of the new episode is awaited (then two camera periods, for its frames),
2. the policy's observation buffer is reset (``/kinova_policy/reset``) and the commands are
   enabled (``/kinova_policy/enable``),
3. ``duration_s`` of wall time is recorded,
4. the commands are disabled again and the node is seen ``disabled`` on ``/diagnostics``
   (so no late command reaches the next episode).

The record becomes the per-episode result through :func:`episode_result` (the metrics of
:mod:`kinova_policy_ros.sim.eval_metrics`).
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
import time
from typing import Any

from kinova_policy_ros.core.errors import KinovaPolicyError
from kinova_policy_ros.ros.node_params import NODE_NAME as POLICY_NODE_NAME
from kinova_policy_ros.sim.eval_metrics import command_entry, episode_metrics
from kinova_policy_ros.sim.eval_records import CommandEntry, EpisodeResult
from kinova_policy_ros.sim.ros.eval_recorder import EvalRecorder, RecordSnapshot, SIM_NODE_NAME
from kinova_policy_ros.sim.ros.services import call_service, call_trigger, wait_for
from kinova_policy_ros.sim.ros.sim_node import msg_to_command
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory

SERVICE_TIMEOUT_S = 15.0
POLL_S = 0.05


@dataclass(frozen=True)
class EpisodeSettings:
    """How an episode runs: recorded wall time, camera period, joint wrap-around."""

    duration_s: float
    camera_period_s: float
    angle_wraparound: bool = False
    timeout_s: float = SERVICE_TIMEOUT_S


def command_dict(t_s: float, msg: JointTrajectory) -> CommandEntry:
    """Return a received command as JSON-friendly lists (the message's own joint order)."""
    return command_entry(t_s, msg_to_command(msg))


def episode_result(
    seed: int,
    reset_info: Mapping[str, Any],
    record: RecordSnapshot,
    t0_ns: int,
    end_ns: int,
    diag_after: Mapping[str, str] | None,
    diag_before: Mapping[str, str] | None,
    angle_wraparound: bool = False,
) -> EpisodeResult:
    """
    Turn one episode's record (``EvalRecorder.snapshot()``) into the per-episode result.

    The commands received in ``[t0_ns, end_ns]`` are converted from messages; everything else
    is :func:`kinova_policy_ros.sim.eval_metrics.episode_metrics`.
    """
    commands = [(s, msg_to_command(m)) for s, m in record['commands'] if t0_ns <= s <= end_ns]
    return episode_metrics(
        seed,
        reset_info,
        {
            'joints': record['joints'],
            'commands': commands,
            'tasks': record['tasks'],
            'diagnostics': record.get('diagnostics', []),
            'predicted': int(record.get('predicted', 0)),
        },
        t0_ns,
        end_ns,
        diag_after,
        diag_before,
        angle_wraparound,
    )


def reset_simulator(
    recorder: EvalRecorder, seed: int, alive: Callable[[], None], timeout: float
) -> dict[str, Any]:
    """Set the simulator's ``seed``, reset to it, await its task state; return the reset info."""
    request = SetParameters.Request()
    request.parameters = [Parameter('seed', Parameter.Type.INTEGER, seed).to_parameter_msg()]
    service = f'/{SIM_NODE_NAME}/set_parameters'
    answer = call_service(recorder.sim_params_client, request, service, alive, timeout)
    if not answer.results or not answer.results[0].successful:
        reason = answer.results[0].reason if answer.results else ''
        raise KinovaPolicyError(f'/{SIM_NODE_NAME}: setting seed {seed} failed: {reason}')
    alive()
    reset_info = call_trigger(recorder, f'/{SIM_NODE_NAME}/reset_to_seed', timeout)
    if int(reset_info.get('seed', -1)) != seed:
        raise KinovaPolicyError(
            f'/{SIM_NODE_NAME}/reset_to_seed reset to seed {reset_info.get("seed")}, not {seed}'
        )
    episode_index = int(reset_info['episode'])

    def new_episode() -> bool:
        alive()
        task = recorder.last_task
        return task is not None and int(task.get('episode', -1)) == episode_index

    wait_for(new_episode, timeout, f'the task state of seed {seed}')
    return reset_info


def reset_policy(recorder: EvalRecorder, alive: Callable[[], None], timeout: float) -> None:
    """Reset the policy node's observation buffer."""
    service = f'/{POLICY_NODE_NAME}/reset'
    answer = call_service(recorder.reset_client, Trigger.Request(), service, alive, timeout)
    if not answer.success:
        raise KinovaPolicyError(f'{service} failed: {answer.message}')


def set_enabled(
    recorder: EvalRecorder, enabled: bool, alive: Callable[[], None], timeout: float
) -> None:
    """Enable or disable the policy node's commands."""
    service = f'/{POLICY_NODE_NAME}/enable'
    call_service(recorder.enable_client, SetBool.Request(data=enabled), service, alive, timeout)


def run_for(duration_s: float, alive: Callable[[], None]) -> None:
    """Let ``duration_s`` of wall time pass, checking the processes every ``POLL_S``."""
    deadline = time.monotonic() + duration_s
    while time.monotonic() < deadline:
        alive()
        time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))


def wait_disabled(
    recorder: EvalRecorder, after_ns: int, alive: Callable[[], None], timeout: float
) -> None:
    """Wait for a ``/diagnostics`` report after ``after_ns`` that says disabled, not running."""

    def disabled() -> bool:
        alive()
        diag = recorder.last_diag
        return (
            diag is not None
            and diag[0] > after_ns
            and diag[1].get('enabled') == 'false'
            and diag[1].get('state') != 'running'
        )

    wait_for(disabled, timeout, f'{POLICY_NODE_NAME} to report disabled')


def run_episode(
    recorder: EvalRecorder, seed: int, settings: EpisodeSettings, alive: Callable[[], None]
) -> EpisodeResult:
    """Run and record the episode of ``seed``; return its result (steps 1-4 above)."""
    timeout = settings.timeout_s
    reset_info = reset_simulator(recorder, seed, alive, timeout)
    time.sleep(2.0 * settings.camera_period_s)  # the camera frames of the new episode
    reset_policy(recorder, alive, timeout)
    diag_before = recorder.last_diag_values()
    recorder.clear()
    t0_ns = recorder.now_ns()
    set_enabled(recorder, True, alive, timeout)
    run_for(settings.duration_s, alive)
    end_ns = recorder.now_ns()
    set_enabled(recorder, False, alive, timeout)
    wait_disabled(recorder, end_ns, alive, timeout)
    return episode_result(
        seed,
        reset_info,
        recorder.snapshot(),
        t0_ns,
        end_ns,
        recorder.last_diag_values(),
        diag_before,
        settings.angle_wraparound,
    )
