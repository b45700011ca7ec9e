"""
ROS 2 node ``kinova_policy``: receding-horizon JointTrajectory control with a trained policy.

The node subscribes an RGB image, a depth image and ``/joint_states``; a control timer at the
checkpoint's rate samples the newest of each, checks their age, pushes one observation into the
:class:`~kinova_policy_ros.policy.inference.PolicyRunner` and, every ``action_horizon`` ticks,
predicts
``pred_horizon`` steps and publishes the first ``action_horizon`` of them, bounded by
:mod:`kinova_policy_ros.policy.safety`, as one ``trajectory_msgs/JointTrajectory``.

Run: ``ros2 run kinova_policy_ros policy_node --ros-args -p checkpoint:=<dir>`` or
``python -m kinova_policy_ros.ros.policy_node --ros-args --params-file config/policy.yaml ...``.
"""

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
import signal
import sys
import threading
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from kinova_policy_ros.core import image_codec
from kinova_policy_ros.core.errors import ConfigError, DecodeError, KinovaPolicyError
from kinova_policy_ros.policy.safety import (
    bound_trajectory,
    map_measured_into_range,
    retime_window,
    UnsafeCommandError,
)
from kinova_policy_ros.ros.messages import duration_msg, duration_ns_msg, now_ns, time_msg
from kinova_policy_ros.ros.node_params import (
    check_range,
    make_limits,
    NODE_NAME,
    PARAMS,
    ParamSpec,
    resolve_joint_mapping,
    Settings,
    settings_from_values,
)
import numpy as np
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
import rclpy
from rclpy.exceptions import ParameterUninitializedException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

_TYPES = {
    'bool': ParameterType.PARAMETER_BOOL,
    'integer': ParameterType.PARAMETER_INTEGER,
    'double': ParameterType.PARAMETER_DOUBLE,
    'string': ParameterType.PARAMETER_STRING,
    'bool_array': ParameterType.PARAMETER_BOOL_ARRAY,
    'double_array': ParameterType.PARAMETER_DOUBLE_ARRAY,
    'string_array': ParameterType.PARAMETER_STRING_ARRAY,
}

MIN_LEAD_NS = 1_000_000
"""A point must lie at least this far in the future when the command is published."""

WARN_THROTTLE_S = 2.0

# Node states (reported on /diagnostics).
WAITING = 'waiting for inputs'
RUNNING = 'running'
DISABLED = 'disabled'
STALE = 'stale input'
INVALID = 'invalid input'
ERROR = 'error'

_LEVELS = {
    WAITING: DiagnosticStatus.WARN,
    RUNNING: DiagnosticStatus.OK,
    DISABLED: DiagnosticStatus.OK,
    STALE: DiagnosticStatus.WARN,
    INVALID: DiagnosticStatus.ERROR,
    ERROR: DiagnosticStatus.ERROR,
}


def descriptor(spec: ParamSpec) -> ParameterDescriptor:
    """Return the ROS parameter descriptor of one entry of the parameter table."""
    desc = ParameterDescriptor(
        name=spec.name,
        type=_TYPES[spec.type_name],
        description=spec.description,
        read_only=spec.read_only,
    )
    if spec.minimum is not None and spec.maximum is not None:
        if spec.type_name == 'integer':
            desc.integer_range = [
                IntegerRange(from_value=int(spec.minimum), to_value=int(spec.maximum), step=1)
            ]
        else:
            desc.floating_point_range = [
                FloatingPointRange(
                    from_value=float(spec.minimum), to_value=float(spec.maximum), step=0.0
                )
            ]
    return desc


@dataclass
class _Sample:
    """The newest message of one input: receipt time, decoded value or the decode error."""

    stamp_ns: int = 0
    value: Any = None
    error: str = ''


class PolicyNode(Node):
    """
    The ``kinova_policy`` node.

    Threading: one :class:`SingleThreadedExecutor` runs every ROS callback (subscriptions and
    image decoding, services, the diagnostics timer and the control timer); the control timer (or,
    in the benchmark mode, the RGB callback) only wakes the *control thread*, a plain thread owned
    by the node and the only code that touches the PolicyRunner. So inference never blocks message
    intake (torch releases the GIL), never overlaps itself, and a tick that arrives while the
    previous one still runs is merged into the next (counted as an overrun). The two threads share
    only the small state guarded by ``self._lock``.

    Not a MultiThreadedExecutor with callback groups: rclpy's executor busy-polls its wait set
    while a ready callback waits for its busy mutually exclusive group (the control timer or
    trigger during inference), which takes the GIL and a core away from the model and turned a
    7 ms step into tens or hundreds of milliseconds on a 2-core machine.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        for spec in PARAMS:
            # An empty list has no element type: declare it by type (value unset = default).
            default = (
                Parameter.Type.STRING_ARRAY
                if isinstance(spec.default, list) and not spec.default
                else spec.default
            )
            self.declare_parameter(spec.name, default, descriptor(spec))
        self.settings: Settings = settings_from_values(self._parameter_values())
        s = self.settings

        # torch is imported here, not at module level: a SIGINT/SIGTERM during the slow import
        # then reaches main()'s handlers and still ends in a clean exit.
        from kinova_policy_ros.policy.inference import PolicyRunner
        import torch

        if s.torch_num_threads > 0:
            torch.set_num_threads(s.torch_num_threads)
        self.runner: PolicyRunner = PolicyRunner.from_checkpoint(
            s.checkpoint, device=s.device, use_cache=s.use_frame_cache
        )
        r = self.runner
        device = str(r.device)
        self.dt = 1.0 / s.control_rate_hz if s.control_rate_hz > 0 else float(r.dt)
        if abs(self.dt - float(r.dt)) > 1e-6:
            self.get_logger().warning(
                f'control_rate_hz {s.control_rate_hz} differs from the rate the model was trained '
                f'at ({1.0 / float(r.dt):.3f} Hz): the plan is replayed at a different speed'
            )
        self.action_horizon = s.action_horizon or int(r.action_horizon)
        if not 1 <= self.action_horizon <= int(r.pred_horizon):
            raise ConfigError(
                f"parameter 'action_horizon': must be 1..{r.pred_horizon} (pred_horizon of "
                f'{s.checkpoint}), got {self.action_horizon}'
            )
        self.mapping = resolve_joint_mapping(s.joint_names, r.joint_names)
        self.limits = make_limits(
            s.limits.lower,
            s.limits.upper,
            s.limits.velocity,
            s.limits.continuous,
            s.limits.velocity_scale,
            self.mapping.robot_names,
        )
        self._q_min = np.asarray(r.q_min, dtype=np.float64)
        self._q_max = np.asarray(r.q_max, dtype=np.float64)
        self._command_index = np.array(self.mapping.command_index, dtype=np.intp)

        # State shared between the io and control threads (guarded by _lock).
        self._lock = threading.Lock()
        self._rgb = _Sample()
        self._depth = _Sample()
        self._joints = _Sample()
        self._joint_index: tuple[tuple[str, ...], np.ndarray] | None = None
        self._enabled = bool(s.enabled_on_start)
        self._reset_requested = False
        self._state = WAITING
        self._state_detail = 'no input received yet'
        self._latencies_s: deque[float] = deque(maxlen=500)
        self._commands_sent = 0
        self._plans = 0
        self._points_dropped = 0
        # Control-thread state.
        self._needs_reset = False
        self._ticks_until_plan = 0

        # Publishers: commands are reliable (what joint_trajectory_controller subscribes with).
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self._command_pub = (
            None
            if s.dry_run
            else self.create_publisher(JointTrajectory, s.command_topic, reliable)
        )
        self._predicted_pub = self.create_publisher(
            JointTrajectory, '~/predicted_trajectory', reliable
        )
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', reliable)

        # Subscriptions with sensor-data QoS (best effort) so reliable and best-effort publishers
        # both reach them. Optionally reliable images: a best-effort reader of a large raw frame
        # (640x480 rgb8 = 900 kB, many UDP fragments) can lose most of them with Fast DDS.
        image_qos = (
            QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
            if s.image_qos_reliable
            else qos_profile_sensor_data
        )
        if s.rgb_compressed:
            self.rgb_topic = s.rgb_topic.rstrip('/') + '/compressed'
            self.create_subscription(
                CompressedImage,
                self.rgb_topic,
                self._on_rgb,
                image_qos,
            )
        else:
            self.rgb_topic = s.rgb_topic
            self.create_subscription(
                Image,
                self.rgb_topic,
                self._on_rgb,
                image_qos,
            )
        self.create_subscription(
            Image,
            s.depth_topic,
            self._on_depth,
            image_qos,
        )
        self.create_subscription(
            JointState,
            s.joint_states_topic,
            self._on_joints,
            qos_profile_sensor_data,
        )
        self.create_service(SetBool, '~/enable', self._on_enable)
        self.create_service(Trigger, '~/reset', self._on_reset)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        # The control thread: woken by the control timer (or each RGB message in the benchmark
        # mode ``trigger_on_rgb``), it runs the control step outside the executor.
        self._wake = threading.Event()
        self._stopping = False
        self._overruns = 0
        self._trigger_on_rgb = bool(s.trigger_on_rgb)
        if not self._trigger_on_rgb:
            self.create_timer(self.dt, self._wake_control_thread)
        self.create_timer(s.diagnostics_period_s, self.publish_diagnostics)
        self._control_thread = threading.Thread(
            target=self._control_loop, name='kinova_policy_control', daemon=True
        )
        self._control_thread.start()
        self.get_logger().info(
            f'ready: checkpoint {s.checkpoint} on {device}, dt {self.dt:.4f} s, '
            f'obs/pred/action horizon {r.obs_horizon}/{r.pred_horizon}/{self.action_horizon}'
            + (' + the anchor frame, ' if r.anchor_frame else ', ')
            + f'joints {list(self.mapping.command_names)}, rgb {self.rgb_topic}, '
            f'depth {s.depth_topic}, joints {s.joint_states_topic}, '
            + ('DRY RUN (no commands)' if s.dry_run else f'commands on {s.command_topic}')
            + ('' if self._enabled else ', disabled: call ~/enable to start')
        )

    # ----------------------------------------------------------------------------- parameters

    def _parameter_values(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for spec in PARAMS:
            try:
                values[spec.name] = self.get_parameter(spec.name).value
            except ParameterUninitializedException:
                # e.g. `joint_names: []` in a YAML file: rcl gives an empty list no type.
                values[spec.name] = spec.default
        return values

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Validate run-time changes of ``max_obs_age_s`` and ``velocity_scale``."""
        updates: dict[str, Any] = {}
        try:
            for p in params:
                if p.name in ('max_obs_age_s', 'velocity_scale'):
                    check_range(p.name, p.value)
                    updates[p.name] = p.value
        except ConfigError as err:
            return SetParametersResult(successful=False, reason=str(err))
        if not hasattr(self, 'limits'):  # still declaring the parameters
            return SetParametersResult(successful=True)
        if 'velocity_scale' in updates:
            lim = self.limits
            self.limits = make_limits(
                lim.lower,
                lim.upper,
                lim.velocity,
                lim.continuous,
                float(updates['velocity_scale']),
                lim.names,
            )
        if 'max_obs_age_s' in updates:
            self.settings = replace(self.settings, max_obs_age_s=float(updates['max_obs_age_s']))
        return SetParametersResult(successful=True)

    # ---------------------------------------------------------------------------------- inputs

    def _now_ns(self) -> int:
        return now_ns(self)

    def _on_rgb(self, msg: Image | CompressedImage) -> None:
        stamp = self._now_ns()
        try:
            if isinstance(msg, CompressedImage):
                rgb = image_codec.decode_compressed_rgb(msg)
            else:
                rgb = image_codec.decode_rgb(msg)
            sample = _Sample(stamp, rgb, '')
        except DecodeError as err:
            sample = _Sample(stamp, None, f'{self.rgb_topic}: {err}')
        with self._lock:
            self._rgb = sample
        if self._trigger_on_rgb:
            self._wake_control_thread()

    def _on_depth(self, msg: Image) -> None:
        stamp = self._now_ns()
        try:
            depth = image_codec.decode_depth(msg)
            if not np.all(np.isfinite(depth)):
                # The dataset stores 0 where depth is invalid: do the same online.
                depth = np.where(np.isfinite(depth), depth, np.float32(0.0)).astype(np.float32)
            sample = _Sample(stamp, depth, '')
        except DecodeError as err:
            sample = _Sample(stamp, None, f'{self.settings.depth_topic}: {err}')
        with self._lock:
            self._depth = sample

    def _on_joints(self, msg: JointState) -> None:
        stamp = self._now_ns()
        sample = _Sample(stamp, None, '')
        names = tuple(msg.name)
        try:
            index = self._joint_index_for(names)
            positions = np.asarray(msg.position, dtype=np.float64)
            if positions.shape[0] != len(names):
                raise ValueError(f'{len(names)} names but {positions.shape[0]} positions')
            q = positions[index]
            bad = ~np.isfinite(q)
            if bad.any():
                raise ValueError(
                    'non-finite position for '
                    + ', '.join(n for n, b in zip(self.mapping.robot_names, bad) if b)
                )
            sample.value = q
        except ValueError as err:
            sample.error = f'{self.settings.joint_states_topic}: {err}'
        with self._lock:
            self._joints = sample

    def _joint_index_for(self, names: tuple[str, ...]) -> np.ndarray:
        cached = self._joint_index
        if cached is not None and cached[0] == names:
            return cached[1]
        lookup = {n: i for i, n in enumerate(names)}
        missing = [n for n in self.mapping.robot_names if n not in lookup]
        if missing:
            raise ValueError(f'missing joints {missing} (message has {list(names)})')
        index = np.array([lookup[n] for n in self.mapping.robot_names], dtype=np.intp)
        self._joint_index = (names, index)
        return index

    # -------------------------------------------------------------------------------- services

    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> Any:
        with self._lock:
            was = self._enabled
            self._enabled = bool(request.data)
        if self.runner.anchor_frame and request.data and not was:
            # the anchor frame must show the scene the commands act on, not the one at start-up
            self._request_reset()
        response.success = True
        response.message = 'enabled' if request.data else 'disabled'
        if was != bool(request.data):
            self.get_logger().info(f'commands {response.message} by ~/enable')
        return response

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Any:
        self._request_reset()
        response.success = True
        response.message = 'observation buffer will be reset at the next control step'
        return response

    def _request_reset(self) -> None:
        """Reset the observation buffer at the next step, from camera frames received after now."""
        with self._lock:
            self._reset_requested = True
            # The first observation after a reset pads the window (and is the anchor frame of a
            # data.anchor_frame model): it must not be a frame taken before the reset.
            self._rgb = _Sample()
            self._depth = _Sample()

    # --------------------------------------------------------------------------------- control

    def _check_inputs(self, now_ns: int) -> tuple[str, str, tuple[_Sample, _Sample, _Sample]]:
        with self._lock:
            samples = (self._rgb, self._depth, self._joints)
        labels = (self.rgb_topic, self.settings.depth_topic, self.settings.joint_states_topic)
        errors = [s.error for s in samples if s.error]
        if errors:
            return INVALID, '; '.join(errors), samples
        never = [lab for lab, s in zip(labels, samples) if s.stamp_ns == 0]
        if never:
            return WAITING, f'no message yet (or since the reset) on {", ".join(never)}', samples
        max_age = self.settings.max_obs_age_s
        stale = [
            f'{lab} ({(now_ns - s.stamp_ns) * 1e-9:.3f} s old)'
            for lab, s in zip(labels, samples)
            if (now_ns - s.stamp_ns) * 1e-9 > max_age
        ]
        if stale:
            return STALE, f'older than max_obs_age_s={max_age}: {", ".join(stale)}', samples
        return RUNNING, '', samples

    def _wake_control_thread(self) -> None:
        """Ask the control thread for a step (executor thread: returns at once)."""
        if self._wake.is_set():
            with self._lock:
                self._overruns += 1  # the previous tick has not started yet: merged into it
        self._wake.set()

    def _control_loop(self) -> None:
        """Run control steps when woken, until :meth:`stop_control_thread`."""
        while True:
            self._wake.wait()  # stop_control_thread() sets it too
            self._wake.clear()
            if self._stopping:
                break
            try:
                self._on_tick()
            except Exception as err:  # keep the thread alive; the state says what happened
                self._needs_reset = True
                self._set_state(ERROR, f'control step failed: {type(err).__name__}: {err}')

    def stop_control_thread(self, timeout_s: float = 10.0) -> None:
        """Stop the control thread after its current step (idempotent)."""
        self._stopping = True
        self._wake.set()
        thread = self._control_thread
        if thread.is_alive() and threading.current_thread() is not thread:
            thread.join(timeout_s)

    def destroy_node(self) -> None:
        """Stop the control thread, then destroy the node."""
        self.stop_control_thread()
        super().destroy_node()

    def _on_tick(self) -> None:
        """Run one control step (the control thread: never concurrent with itself)."""
        tick_ns = self._now_ns()
        # The reset flag before the inputs: a reset between the two clears the inputs this step
        # reads, so the step after a reset never pushes a frame received before it.
        with self._lock:
            enabled = self._enabled
            reset_requested, self._reset_requested = self._reset_requested, False
        state, detail, (rgb, depth, joints) = self._check_inputs(tick_ns)
        if state != RUNNING:
            self._needs_reset = True  # start from a clean buffer once inputs are fresh again
            self._set_state(state, detail)
            return
        if self._needs_reset or reset_requested:
            self.runner.reset()
            self._ticks_until_plan = 0
            if self._needs_reset and self._state in (STALE, INVALID, ERROR):
                self.get_logger().info('inputs are fresh again: observation buffer reset')
            self._needs_reset = False
        q_meas = joints.value
        q_model = map_measured_into_range(q_meas, self._q_min, self._q_max, self.limits.continuous)
        try:
            self.runner.push_observation(rgb.value, depth.value, q_model)
        except (KinovaPolicyError, ValueError) as err:
            self._needs_reset = True
            self._set_state(INVALID, f'observation rejected: {err}')
            return
        self._ticks_until_plan -= 1
        if not enabled:
            self._ticks_until_plan = 0  # plan at once when enabled again
            self._set_state(DISABLED, 'call ~/enable to publish commands')
            return
        if self._ticks_until_plan > 0:
            self._set_state(RUNNING, '')
            return
        self._ticks_until_plan = self.action_horizon
        try:
            self._plan_and_publish(tick_ns, q_meas)
        except (KinovaPolicyError, ValueError, RuntimeError) as err:
            self._needs_reset = True
            self._set_state(ERROR, f'no command: {err}')

    def _plan_and_publish(self, tick_ns: int, q_meas: np.ndarray) -> None:
        pred = np.asarray(self.runner.predict(), dtype=np.float64)  # [T, 7] checkpoint order
        if not np.all(np.isfinite(pred)):
            raise UnsafeCommandError('the model predicted non-finite joint positions')
        # Latency compensation (the command starts on arrival, stamp 0): see retime_window.
        elapsed_ns = self._now_ns() - tick_ns
        first, times_ns = retime_window(
            pred.shape[0], self.dt, elapsed_ns, self.action_horizon, MIN_LEAD_NS
        )
        window = pred[first:][: times_ns.shape[0]]
        positions, velocities = bound_trajectory(window, q_meas, times_ns * 1e-9, self.limits)
        msg = JointTrajectory()
        msg.joint_names = list(self.mapping.command_names)  # header.stamp 0: start on arrival
        idx = self._command_index
        for p, v, t in zip(positions[:, idx], velocities[:, idx], times_ns):
            point = JointTrajectoryPoint()
            point.positions = p.tolist()
            point.velocities = v.tolist()
            point.time_from_start = duration_ns_msg(int(t))
            msg.points.append(point)
        if self._command_pub is not None:
            self._command_pub.publish(msg)
        latency_s = (self._now_ns() - tick_ns) * 1e-9
        self._publish_predicted(pred, tick_ns)  # for plotting: after the command, off its path
        with self._lock:
            self._latencies_s.append(latency_s)
            self._plans += 1
            self._commands_sent += self._command_pub is not None
            self._points_dropped += first
        self._set_state(RUNNING, '')

    def _publish_predicted(self, pred: np.ndarray, tick_ns: int) -> None:
        msg = JointTrajectory()
        msg.header.stamp = time_msg(tick_ns)
        msg.joint_names = list(self.mapping.command_names)
        for i, row in enumerate(pred[:, self._command_index]):
            point = JointTrajectoryPoint()
            point.positions = row.tolist()
            point.time_from_start = duration_msg((i + 1) * self.dt)
            msg.points.append(point)
        self._predicted_pub.publish(msg)

    # ----------------------------------------------------------------------------- diagnostics

    def _set_state(self, state: str, detail: str) -> None:
        with self._lock:
            changed = (state, detail) != (self._state, self._state_detail)
            old = self._state
            self._state, self._state_detail = state, detail
        if state in (STALE, INVALID, ERROR):
            self.get_logger().warning(
                f'{state}: {detail}; no command', throttle_duration_sec=WARN_THROTTLE_S
            )
        if changed and (state != old or state in (INVALID, ERROR)):
            self.publish_diagnostics()

    def publish_diagnostics(self) -> None:
        """Publish the node status (state, input ages, inference latency) on /diagnostics."""
        now_ns = self._now_ns()
        with self._lock:
            state, detail = self._state, self._state_detail
            samples = {'rgb': self._rgb, 'depth': self._depth, 'joints': self._joints}
            lat = np.array(self._latencies_s, dtype=np.float64)
            counts = (self._plans, self._commands_sent, self._points_dropped, self._enabled)
            overruns = self._overruns
        status = DiagnosticStatus()
        status.level = _LEVELS[state]
        status.name = f'{self.get_name()}: policy'
        status.hardware_id = 'kinova_gen3'
        status.message = state + (f': {detail}' if detail else '')
        values = {'state': state, 'detail': detail, 'enabled': str(counts[3]).lower()}
        for key, s in samples.items():
            values[f'{key}_age_s'] = f'{(now_ns - s.stamp_ns) * 1e-9:.3f}' if s.stamp_ns else 'inf'
        if lat.size:
            values['inference_latency_p50_ms'] = f'{np.percentile(lat, 50) * 1e3:.2f}'
            values['inference_latency_p99_ms'] = f'{np.percentile(lat, 99) * 1e3:.2f}'
        values['plans'] = str(counts[0])
        values['commands_published'] = str(counts[1])
        values['points_dropped_for_latency'] = str(counts[2])
        values['control_overruns'] = str(overruns)
        values['dry_run'] = str(self.settings.dry_run).lower()
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [status]
        self._diag_pub.publish(msg)


def main(args: Sequence[str] | None = None) -> int:
    """
    Run the node until SIGINT/SIGTERM; return 0, or 1 when it cannot start.

    The signals only set a flag: the spin loop ends, then the executor, the node and the ROS
    context are shut down in that order (rclpy's own handlers shut the context down under the
    running executor, which can surface as an RCLError instead of a clean exit).
    """
    rclpy.init(
        args=list(args) if args is not None else None,
        signal_handler_options=SignalHandlerOptions.NO,
    )
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda signum, frame: stop.set())
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    node: PolicyNode | None = None
    executor: SingleThreadedExecutor | None = None
    rc = 0
    try:
        node = PolicyNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except KinovaPolicyError as err:
        rclpy.logging.get_logger(NODE_NAME).error(f'cannot start: {err}')
        rc = 1
    finally:
        if node is not None:
            node.stop_control_thread()  # the control step in progress ends first
        if executor is not None:
            executor.shutdown(timeout_sec=5.0)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return rc


if __name__ == '__main__':
    sys.exit(main())
