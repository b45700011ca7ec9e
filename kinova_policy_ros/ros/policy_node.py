"""
ROS 2 node ``kinova_policy``: receding-horizon JointTrajectory control with a trained policy.

The node subscribes an RGB image, a depth image and ``/joint_states``; a control timer at the
checkpoint's rate samples the newest of each, checks their age, pushes one observation into the
:class:`~kinova_policy_ros.policy.inference.PolicyRunner` and, every ``action_horizon`` ticks,
predicts ``pred_horizon`` steps and publishes the first ``action_horizon`` of them, bounded by
:mod:`kinova_policy_ros.policy.safety`, as one ``trajectory_msgs/JointTrajectory``. Every plan
is also published raw (``~/predicted_trajectory``) and as the end-effector path of forward
kinematics (``~/predicted_ee_path``, ``nav_msgs/Path`` in ``base_frame``); with ``dry_run`` the
node plans whether or not it is enabled and never publishes a command. Colour and depth may have
any sizes: each is fitted to the model input on its own (``data.fit``); a size or aspect ratio
that differs from the training data is logged once as a warning.

This module wires the parts together: :mod:`~kinova_policy_ros.ros.parameters` (declaring and
reading the parameters), :mod:`~kinova_policy_ros.ros.inputs` (decoding and the newest sample of
each input), :mod:`~kinova_policy_ros.ros.commands` (the command and predicted-path messages),
:mod:`~kinova_policy_ros.ros.diagnostics` (state and ``/diagnostics``),
:mod:`~kinova_policy_ros.ros.services` (``~/enable``, ``~/reset``) and
:mod:`~kinova_policy_ros.ros.control_thread`.

Run: ``ros2 run kinova_policy_ros policy_node --ros-args -p checkpoint:=<dir>`` or
``python -m kinova_policy_ros.ros.policy_node --ros-args --params-file config/policy.yaml ...``.
"""

from __future__ import annotations  # Parameter[...] is generic on Kilted only (Jazzy: not)

from collections.abc import Sequence
import sys
from typing import Any, TYPE_CHECKING

from diagnostic_msgs.msg import DiagnosticArray
from kinova_policy_ros.core.errors import ConfigError, KinovaPolicyError
from kinova_policy_ros.policy.handover import Planner
from kinova_policy_ros.policy.safety import map_measured_into_range
from kinova_policy_ros.ros import signals
from kinova_policy_ros.ros.commands import (
    chain_order,
    command_msg,
    predicted_msg,
    predicted_path_msg,
)
from kinova_policy_ros.ros.control_thread import ControlThread
from kinova_policy_ros.ros.diagnostics import (
    diagnostic_array,
    DISABLED,
    ERROR,
    FAULT_STATES,
    INVALID,
    NodeStatus,
    RUNNING,
)
from kinova_policy_ros.ros.inputs import (
    depth_sample,
    FloatArray,
    InputBuffer,
    JointStateReader,
    Observation,
    rgb_sample,
)
from kinova_policy_ros.ros.messages import now_ns
from kinova_policy_ros.ros.node_params import (
    make_limits,
    NODE_NAME,
    resolve_joint_mapping,
    Settings,
)
from kinova_policy_ros.ros.parameters import apply_updates, read_settings, runtime_updates
from kinova_policy_ros.ros.services import ServiceHandlers
from nav_msgs.msg import Path
import numpy as np
from rcl_interfaces.msg import SetParametersResult
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CompressedImage, Image, JointState
from trajectory_msgs.msg import JointTrajectory

if TYPE_CHECKING:
    from kinova_policy_ros.policy.inference import PolicyRunner

__all__ = ['WARN_THROTTLE_S', 'PolicyNode', 'main']

WARN_THROTTLE_S = 2.0


class PolicyNode(Node):
    """
    The ``kinova_policy`` node.

    Threading: one :class:`SingleThreadedExecutor` runs every ROS callback (subscriptions and
    image decoding, services, the diagnostics timer and the control timer); the control timer (or,
    in the benchmark mode, the RGB callback) only wakes the :class:`ControlThread`, a plain thread
    owned by the node and the only code that touches the PolicyRunner. So inference never blocks
    message intake (torch releases the GIL), never overlaps itself, and a tick that arrives while
    the previous one still runs is merged into the next (counted as an overrun). The two threads
    share only the :class:`InputBuffer` and the :class:`NodeStatus`, each with its own lock.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.settings: Settings = read_settings(self)
        s = self.settings
        self.runner: PolicyRunner = self._load_runner(s)
        self._configure_control(s)
        compressed_topic = s.rgb_topic.rstrip('/') + '/compressed'
        self.rgb_topic = compressed_topic if s.rgb_compressed else s.rgb_topic
        self.inputs = InputBuffer((self.rgb_topic, s.depth_topic, s.joint_states_topic))
        self._joint_reader = JointStateReader(self.mapping.robot_names, s.joint_states_topic)
        self.status = NodeStatus(s.enabled_on_start)
        # The control thread: woken by the control timer (or each RGB message in the benchmark
        # mode ``trigger_on_rgb``), it runs the control step outside the executor.
        self._trigger_on_rgb = bool(s.trigger_on_rgb)
        self._control = ControlThread(self._on_tick, self._on_step_error)
        # Control-thread state.
        self._needs_reset = False
        self._ticks_until_plan = 0
        self._stream_sizes: tuple[tuple[int, ...], tuple[int, ...]] | None = None
        self._create_publishers(s)
        self._create_subscriptions(s)
        self._service_handlers = ServiceHandlers(
            self.status.set_enabled,
            self.inputs.request_reset,
            reset_on_enable=bool(self.runner.anchor_frame),
            log=self.get_logger().info,
        )
        self._service_handlers.create(self)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        if not self._trigger_on_rgb:
            self.create_timer(self.dt, self._control.wake)
        self.create_timer(s.diagnostics_period_s, self.publish_diagnostics)
        self._control.start()
        self.get_logger().info(self._ready_message())

    # ------------------------------------------------------------------------------ set-up

    def _load_runner(self, s: Settings) -> PolicyRunner:
        # torch is imported here, not at module level: a SIGINT/SIGTERM during the slow import
        # then reaches main()'s handlers and still ends in a clean exit.
        from kinova_policy_ros.policy.inference import PolicyRunner
        import torch

        if s.torch_num_threads > 0:
            torch.set_num_threads(s.torch_num_threads)
        runner = PolicyRunner.from_checkpoint(
            s.checkpoint, device=s.device, use_cache=s.use_frame_cache, jit=s.torchscript
        )
        if runner.jit_note:
            self.get_logger().warning(runner.jit_note)
        return runner

    def _configure_control(self, s: Settings) -> None:
        """Set the period, action horizon, joint mapping and limits from settings + checkpoint."""
        r = self.runner
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
            s.limits.acceleration,
        )
        self.planner = Planner(self.limits, self.dt, self.action_horizon, s.handover)
        self._q_min = np.asarray(r.q_min, dtype=np.float64)
        self._q_max = np.asarray(r.q_max, dtype=np.float64)
        self._command_index = np.array(self.mapping.command_index, dtype=np.intp)
        self._fk_index = chain_order(r.joint_names)  # None: not a 7-joint arm, no path

    def _create_publishers(self, s: Settings) -> None:
        # Commands are reliable (what joint_trajectory_controller subscribes with).
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self._command_pub = (
            None
            if s.dry_run
            else self.create_publisher(JointTrajectory, s.command_topic, reliable)
        )
        self._predicted_pub = self.create_publisher(
            JointTrajectory, '~/predicted_trajectory', reliable
        )
        self._path_pub = self.create_publisher(Path, '~/predicted_ee_path', reliable)
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', reliable)

    def _create_subscriptions(self, s: Settings) -> None:
        # Sensor-data QoS (best effort) so reliable and best-effort publishers both reach them.
        # Optionally reliable images: a best-effort reader of a large raw frame (640x480 rgb8 =
        # 900 kB, many UDP fragments) can lose most of them with Fast DDS.
        image_qos = (
            QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
            if s.image_qos_reliable
            else qos_profile_sensor_data
        )
        rgb_type = CompressedImage if s.rgb_compressed else Image
        self.create_subscription(rgb_type, self.rgb_topic, self._on_rgb, image_qos)
        self.create_subscription(Image, s.depth_topic, self._on_depth, image_qos)
        self.create_subscription(
            JointState, s.joint_states_topic, self._on_joints, qos_profile_sensor_data
        )

    def _ready_message(self) -> str:
        s, r = self.settings, self.runner
        return (
            f'ready: checkpoint {s.checkpoint} on {r.device}'
            + (' (TorchScript)' if r.jit else '')
            + f', dt {self.dt:.4f} s, '
            f'obs/pred/action horizon {r.obs_horizon}/{r.pred_horizon}/{self.action_horizon}'
            + (' + the anchor frame, ' if r.anchor_frame else ', ')
            + f'joints {list(self.mapping.command_names)}, rgb {self.rgb_topic}, '
            f'depth {s.depth_topic}, joints {s.joint_states_topic}, '
            + (
                'DRY RUN (no commands; plans and ~/predicted_ee_path before ~/enable too)'
                if s.dry_run
                else f'commands on {s.command_topic}'
            )
            + ('' if self.status.enabled or s.dry_run else ', disabled: call ~/enable to start')
        )

    # ----------------------------------------------------------------------------- parameters

    def _on_set_parameters(self, params: list[Parameter[Any]]) -> SetParametersResult:
        """Validate and apply run-time changes of ``max_obs_age_s`` and ``velocity_scale``."""
        try:
            updates = runtime_updates(params)
        except ConfigError as err:
            return SetParametersResult(successful=False, reason=str(err))
        self.settings, self.limits = apply_updates(self.settings, self.limits, updates)
        self.planner.limits = self.limits
        return SetParametersResult(successful=True)

    # ---------------------------------------------------------------------------------- inputs

    def _on_rgb(self, msg: Image | CompressedImage) -> None:
        self.inputs.put_rgb(rgb_sample(msg, now_ns(self), self.rgb_topic))
        if self._trigger_on_rgb:
            self._control.wake()

    def _on_depth(self, msg: Image) -> None:
        self.inputs.put_depth(depth_sample(msg, now_ns(self), self.settings.depth_topic))

    def _on_joints(self, msg: JointState) -> None:
        self.inputs.put_joints(self._joint_reader.sample(msg, now_ns(self)))

    # --------------------------------------------------------------------------------- control

    def stop_control_thread(self, timeout_s: float = 10.0) -> None:
        """Stop the control thread after its current step (idempotent)."""
        self._control.stop(timeout_s)

    def destroy_node(self) -> None:
        """Stop the control thread, then destroy the node."""
        self.stop_control_thread()
        super().destroy_node()

    def _on_step_error(self, err: Exception) -> None:
        self._needs_reset = True
        self._set_state(ERROR, f'control step failed: {type(err).__name__}: {err}')

    def _on_tick(self) -> None:
        """Run one control step (the control thread: never concurrent with itself)."""
        tick_ns = now_ns(self)
        # The reset flag before the inputs: a reset between the two clears the inputs this step
        # reads, so the step after a reset never pushes a frame received before it.
        enabled = self.status.enabled
        if self.inputs.take_reset_request():
            # ~/reset (a new episode) forgets the last command at once. The request also forgot
            # the camera frames, so the steps until new ones arrive return early below; the
            # observation buffer restarts with the first of them.
            self.planner.reset()
            self._needs_reset = True
        state, detail, obs = self.inputs.check(tick_ns, self.settings.max_obs_age_s)
        if state != RUNNING or obs is None:
            self._needs_reset = True  # start from a clean buffer once inputs are fresh again
            self._set_state(state, detail)
            return
        if self._needs_reset:
            self.runner.reset()
            self._ticks_until_plan = 0
            # The kept predictions belong to the old history. After an input fault the last
            # command still runs on the controller (or has ended at rest): keep it.
            self.planner.forget_predictions()
            if self.status.state in FAULT_STATES:
                self.get_logger().info('inputs are fresh again: observation buffer reset')
            self._needs_reset = False
        self._check_stream_sizes(obs)
        q_meas = obs.q
        q_model = map_measured_into_range(q_meas, self._q_min, self._q_max, self.limits.continuous)
        try:
            self.runner.push_observation(obs.rgb, obs.depth, q_model)
        except (KinovaPolicyError, ValueError) as err:
            self._needs_reset = True
            self._set_state(INVALID, f'observation rejected: {err}')
            return
        self._ticks_until_plan -= 1
        if not enabled and not self.settings.dry_run:  # a dry run plans before ~/enable too
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

    def _plan_and_publish(self, tick_ns: int, q_meas: FloatArray) -> None:
        pred = np.asarray(self.runner.predict(), dtype=np.float64)  # [T, 7] checkpoint order
        # The command starts on arrival (stamp 0): latency compensation and the hand-over from
        # the running command are the planner's (policy/handover.py).
        plan = self.planner.plan(pred, q_meas, tick_ns, now_ns(self))
        msg = command_msg(plan, self.mapping.command_names, self._command_index)
        if self._command_pub is not None:
            self._command_pub.publish(msg)
        latency_s = (now_ns(self) - tick_ns) * 1e-9
        # For plotting: after the command, off its path, and only built when someone listens
        # (forward kinematics and two messages built in Python: ~0.6 ms the next tick waits for).
        if self._predicted_pub.get_subscription_count() > 0:
            self._predicted_pub.publish(
                predicted_msg(
                    pred, tick_ns, self.dt, self.mapping.command_names, self._command_index
                )
            )
        if self._fk_index is not None and self._path_pub.get_subscription_count() > 0:
            self._path_pub.publish(
                predicted_path_msg(
                    pred[:, self._fk_index], tick_ns, self.dt, self.settings.base_frame
                )
            )
        self.status.record_plan(latency_s, self._command_pub is not None, plan.first)
        self._set_state(RUNNING, '')

    def _check_stream_sizes(self, obs: Observation) -> None:
        """Log how the streams are fitted, and warn if they differ from training (per size)."""
        sizes = (obs.rgb.shape[:2], obs.depth.shape[:2])
        if sizes == self._stream_sizes:
            return
        self._stream_sizes = sizes
        rgb_hw = (int(sizes[0][0]), int(sizes[0][1]))
        depth_hw = (int(sizes[1][0]), int(sizes[1][1]))
        info, warning = self.runner.stream_report(rgb_hw, depth_hw)
        self.get_logger().info(f'camera streams: {info}')
        if warning:
            self.get_logger().warning(f'camera streams differ from the training data: {warning}')

    # ----------------------------------------------------------------------------- diagnostics

    def _set_state(self, state: str, detail: str) -> None:
        report = self.status.set_state(state, detail)
        if state in FAULT_STATES:
            self.get_logger().warning(
                f'{state}: {detail}; no command', throttle_duration_sec=WARN_THROTTLE_S
            )
        if report:
            self.publish_diagnostics()

    def publish_diagnostics(self) -> None:
        """Publish the node status (state, input ages, inference latency) on /diagnostics."""
        stamp_ns = now_ns(self)
        samples = self.inputs.samples()
        stamps = {
            'rgb': samples.rgb.stamp_ns,
            'depth': samples.depth.stamp_ns,
            'joints': samples.joints.stamp_ns,
        }
        msg = diagnostic_array(
            f'{self.get_name()}: policy',
            self.status.snapshot(),
            stamps,
            stamp_ns,
            self._control.overruns,
            self.settings.dry_run,
        )
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
    previous = signals.install()  # a signal during the imports is a stop request already
    node: PolicyNode | None = None
    executor: SingleThreadedExecutor | None = None
    rc = 0
    try:
        if signals.stop_requested():
            return 0  # stopped during start-up (finally: shut down, restore the handlers)
        node = PolicyNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while not signals.stop_requested() and rclpy.ok():
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
        signals.restore(previous)
    return rc


if __name__ == '__main__':
    sys.exit(main())
