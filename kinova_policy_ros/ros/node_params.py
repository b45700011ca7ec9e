"""
Parameters of the ``kinova_policy`` node: one table, their validation, joint-name mapping.

Pure Python + numpy (no rclpy): the node builds its ROS parameter descriptors from
:data:`PARAMS`, and the structural launch-file test and the docs read the same table without a
ROS installation.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
import math
import re
from typing import Any

from kinova_policy_ros.core import kinematics
from kinova_policy_ros.core.errors import ConfigError
from kinova_policy_ros.policy.handover import HANDOVER_MODES, HandoverConfig
from kinova_policy_ros.policy.safety import CommandLimits
import numpy as np
import numpy.typing as npt

NODE_NAME = 'kinova_policy'
EXECUTABLE = 'policy_node'
PACKAGE = 'kinova_policy_ros'

DEVICE_RE = re.compile(r'^(auto|cpu|cuda(:\d+)?)$')


@dataclass(frozen=True)
class ParamSpec:
    """
    One node parameter: name, default (its Python type is the parameter type), description.

    ``read_only`` parameters are fixed after start-up; ``minimum``/``maximum`` bound numbers
    (inclusive); ``in_yaml`` says whether ``config/policy.yaml`` lists it.
    """

    name: str
    default: Any
    description: str
    read_only: bool = True
    minimum: float | None = None
    maximum: float | None = None
    in_yaml: bool = True

    @property
    def type_name(self) -> str:
        """Return the ROS parameter type: bool, integer, double, string or <type>_array."""
        return _type_name(self.default)


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return 'bool'
    if isinstance(value, int):
        return 'integer'
    if isinstance(value, float):
        return 'double'
    if isinstance(value, str):
        return 'string'
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, bool) for v in value):
            return 'bool_array'
        if value and all(isinstance(v, float) for v in value):
            return 'double_array'
        return 'string_array'
    raise TypeError(f'unsupported parameter default {value!r}')


def _floats(arr: np.ndarray) -> list[float]:
    return [float(v) for v in arr]


PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec('checkpoint', '', 'Checkpoint directory (required).'),
    ParamSpec('device', 'auto', 'Inference device: auto, cpu, cuda or cuda:N.'),
    ParamSpec(
        'torch_num_threads',
        1,
        'CPU threads of torch (torch.set_num_threads); 0 = torch default (one per core). One '
        'thread gives the lowest, steadiest step latency on a busy CPU.',
        minimum=0,
        maximum=256,
    ),
    ParamSpec('rgb_topic', '/camera/color/image_raw', 'RGB image topic (sensor_msgs/Image).'),
    ParamSpec(
        'depth_topic', '/camera/depth/image_raw', 'Depth image topic (16UC1 mm or 32FC1 m).'
    ),
    ParamSpec('joint_states_topic', '/joint_states', 'sensor_msgs/JointState topic.'),
    ParamSpec(
        'command_topic',
        '/joint_trajectory_controller/joint_trajectory',
        'trajectory_msgs/JointTrajectory command topic of the joint_trajectory_controller.',
    ),
    ParamSpec(
        'rgb_compressed',
        False,
        'Subscribe <rgb_topic>/compressed (sensor_msgs/CompressedImage, jpeg/png) instead.',
    ),
    ParamSpec(
        'image_qos_reliable',
        False,
        'Subscribe the images RELIABLE instead of sensor-data (best effort) QoS: only reliable '
        'publishers then reach the node, but large raw frames are not lost to fragmentation.',
    ),
    ParamSpec(
        'control_rate_hz',
        0.0,
        'Control rate in Hz; 0.0 = 1/dt of the checkpoint (the rate the model was trained at).',
        minimum=0.0,
        maximum=1000.0,
    ),
    ParamSpec(
        'action_horizon',
        0,
        'Points per command and ticks between plans; 0 = the checkpoint value, else '
        '1..pred_horizon.',
        minimum=0,
        maximum=1000,
    ),
    ParamSpec(
        'max_obs_age_s',
        0.2,
        'Inputs older than this (s, by receipt time) stop commands until they are fresh again.',
        read_only=False,
        minimum=0.001,
        maximum=60.0,
    ),
    ParamSpec(
        'joint_names',
        [],
        'Robot joint names in controller order; empty = the checkpoint names. A permutation of '
        'the checkpoint names reorders the command; other names rename the checkpoint joints '
        'position by position (e.g. a prefix).',
        in_yaml=False,  # an empty list in YAML has no type for rcl: leave it out, see policy.yaml
    ),
    ParamSpec(
        'position_lower',
        _floats(kinematics.POSITION_LOWER),
        'Lower position limits (rad) in checkpoint joint order; ignored for continuous joints.',
    ),
    ParamSpec(
        'position_upper',
        _floats(kinematics.POSITION_UPPER),
        'Upper position limits (rad) in checkpoint joint order; ignored for continuous joints.',
    ),
    ParamSpec(
        'velocity_limits',
        _floats(kinematics.VELOCITY_LIMITS),
        'Velocity limits (rad/s) in checkpoint joint order.',
    ),
    ParamSpec(
        'continuous_joints',
        [bool(v) for v in kinematics.CONTINUOUS],
        'Which joints are continuous (no position limit, commanded the shortest way).',
    ),
    ParamSpec(
        'acceleration_limits',
        _floats(kinematics.ACCELERATION_LIMITS),
        'Acceleration limits (rad/s²) in checkpoint joint order; .inf = no bound for a joint.',
    ),
    ParamSpec(
        'handover',
        HandoverConfig().mode,
        'How a new plan takes over from the running command: ' + ', '.join(HANDOVER_MODES)
        + ' (docs/controller.md).',
    ),
    ParamSpec(
        'lookahead_steps',
        HandoverConfig().lookahead_steps,
        'Predicted points published beyond the action_horizon executed ones (the command still '
        'ends at rest); -1 = the rest of the prediction. Ignored by handover rest.',
        minimum=-1,
        maximum=1000,
    ),
    ParamSpec(
        'splice_steps',
        HandoverConfig().splice_steps,
        'handover splice: points of a new plan blended from the running command.',
        minimum=0,
        maximum=1000,
    ),
    ParamSpec(
        'ensemble_decay',
        HandoverConfig().ensemble_decay,
        "handover ensemble: ACT's m, weights exp(-m i) from the oldest prediction (i = 0).",
        minimum=0.0,
        maximum=100.0,
    ),
    ParamSpec(
        'spline_degree',
        HandoverConfig().spline_degree,
        'handover spline: degree of the least-squares polynomial through a plan.',
        minimum=2,
        maximum=6,
    ),
    ParamSpec(
        'velocity_scale',
        0.5,
        'Fraction (0, 1] of the velocity limits a command may use between two points.',
        read_only=False,
        minimum=0.01,
        maximum=1.0,
    ),
    ParamSpec(
        'enabled_on_start',
        False,
        'Publish commands right after start-up; false = wait for ~/enable (std_srvs/SetBool).',
    ),
    ParamSpec(
        'dry_run',
        False,
        'Run the policy and publish ~/predicted_trajectory and ~/predicted_ee_path, but never '
        'the command topic; plans whether or not ~/enable was called (check the path first).',
    ),
    ParamSpec(
        'base_frame',
        kinematics.BASE_LINK,
        'frame_id of ~/predicted_ee_path (nav_msgs/Path): the frame forward kinematics of the '
        'predicted joints is expressed in (the robot base of the ros2_kortex URDF).',
    ),
    ParamSpec(
        'torchscript',
        True,
        'Run the frame encoder and the transformer as frozen TorchScript traces (checked against '
        'the model at startup, eager if tracing fails; ~1.5x faster steps on a CPU).',
    ),
    ParamSpec(
        'use_frame_cache',
        True,
        'Encode only the newest frame per step (false: recompute the whole window; benchmark).',
    ),
    ParamSpec(
        'trigger_on_rgb',
        False,
        'Run a control step on every RGB message instead of on the timer (latency benchmark).',
    ),
    ParamSpec(
        'diagnostics_period_s',
        1.0,
        'Period of the /diagnostics status (s); it is also sent on every state change.',
        minimum=0.05,
        maximum=60.0,
    ),
)

PARAM_BY_NAME: dict[str, ParamSpec] = {p.name: p for p in PARAMS}


@dataclass(frozen=True)
class Settings:
    """Validated parameter values (before the checkpoint is known)."""

    checkpoint: str
    device: str
    torch_num_threads: int
    rgb_topic: str
    depth_topic: str
    joint_states_topic: str
    command_topic: str
    rgb_compressed: bool
    image_qos_reliable: bool
    control_rate_hz: float
    action_horizon: int
    max_obs_age_s: float
    joint_names: tuple[str, ...]
    limits: CommandLimits
    handover: HandoverConfig
    enabled_on_start: bool
    dry_run: bool
    base_frame: str
    use_frame_cache: bool
    torchscript: bool
    trigger_on_rgb: bool
    diagnostics_period_s: float


def check_range(name: str, value: Any) -> None:
    """Raise :class:`ConfigError` when a numeric parameter is outside its declared range."""
    spec = PARAM_BY_NAME[name]
    if spec.minimum is None and spec.maximum is None:
        return
    v = float(value)
    if not math.isfinite(v):
        raise ConfigError(f'parameter {name!r}: must be finite, got {value!r}')
    if spec.minimum is not None and v < spec.minimum:
        raise ConfigError(f'parameter {name!r}: must be >= {spec.minimum}, got {value!r}')
    if spec.maximum is not None and v > spec.maximum:
        raise ConfigError(f'parameter {name!r}: must be <= {spec.maximum}, got {value!r}')


def make_limits(
    lower: npt.ArrayLike,
    upper: npt.ArrayLike,
    velocity: npt.ArrayLike,
    continuous: npt.ArrayLike,
    velocity_scale: float,
    names: Sequence[str] = (),
    acceleration: npt.ArrayLike | None = None,
) -> CommandLimits:
    """Build :class:`CommandLimits` from parameter values; errors name the parameter."""
    arrays: dict[str, list[Any]] = {
        'position_lower': np.ravel(lower).tolist(),
        'position_upper': np.ravel(upper).tolist(),
        'velocity_limits': np.ravel(velocity).tolist(),
        'continuous_joints': np.ravel(continuous).tolist(),
    }
    if acceleration is not None:
        arrays['acceleration_limits'] = np.ravel(acceleration).tolist()
    for name, values in arrays.items():
        if len(values) != kinematics.NUM_JOINTS:
            raise ConfigError(
                f'parameter {name!r}: expected {kinematics.NUM_JOINTS} values, got {len(values)}'
            )
    check_range('velocity_scale', velocity_scale)
    try:
        return CommandLimits(
            lower=np.array(lower, dtype=np.float64),
            upper=np.array(upper, dtype=np.float64),
            velocity=np.array(velocity, dtype=np.float64),
            continuous=np.array(continuous, dtype=np.bool_),
            velocity_scale=float(velocity_scale),
            names=tuple(names),
            acceleration=None if acceleration is None else np.array(acceleration, np.float64),
        )
    except ValueError as err:
        raise ConfigError(f'joint limit parameters: {err}') from err


def settings_from_values(values: Mapping[str, Any]) -> Settings:
    """Validate parameter values (every name of :data:`PARAMS`) into :class:`Settings`."""
    missing = [p.name for p in PARAMS if p.name not in values]
    if missing:
        raise ConfigError(f'parameters missing: {missing}')
    checkpoint = str(values['checkpoint']).strip()
    if not checkpoint:
        raise ConfigError(
            "parameter 'checkpoint' is required: pass -p checkpoint:=<checkpoint directory> "
            '(or checkpoint:=... to the launch file)'
        )
    device = str(values['device']).strip()
    if not DEVICE_RE.match(device):
        raise ConfigError(
            f"parameter 'device': expected auto, cpu, cuda or cuda:N, got {device!r}"
        )
    for name in ('rgb_topic', 'depth_topic', 'joint_states_topic', 'command_topic', 'base_frame'):
        if not str(values[name]).strip():
            raise ConfigError(f'parameter {name!r}: must not be empty')
    for name in (
        'torch_num_threads',
        'control_rate_hz',
        'action_horizon',
        'max_obs_age_s',
        'diagnostics_period_s',
    ):
        check_range(name, values[name])
    joint_names = tuple(str(n) for n in values['joint_names'] or ())
    if joint_names and (
        len(joint_names) != kinematics.NUM_JOINTS or len(set(joint_names)) != len(joint_names)
    ):
        raise ConfigError(
            f"parameter 'joint_names': expected {kinematics.NUM_JOINTS} distinct names or an "
            f'empty list, got {list(joint_names)}'
        )
    limits = make_limits(
        values['position_lower'],
        values['position_upper'],
        values['velocity_limits'],
        values['continuous_joints'],
        values['velocity_scale'],
        acceleration=values['acceleration_limits'],
    )
    for name in ('lookahead_steps', 'splice_steps', 'ensemble_decay', 'spline_degree'):
        check_range(name, values[name])
    try:
        handover = HandoverConfig(
            mode=str(values['handover']),
            lookahead_steps=int(values['lookahead_steps']),
            splice_steps=int(values['splice_steps']),
            ensemble_decay=float(values['ensemble_decay']),
            spline_degree=int(values['spline_degree']),
        )
    except ValueError as err:
        raise ConfigError(f"parameter 'handover': {err}") from err
    return Settings(
        checkpoint=checkpoint,
        device=device,
        torch_num_threads=int(values['torch_num_threads']),
        rgb_topic=str(values['rgb_topic']),
        depth_topic=str(values['depth_topic']),
        joint_states_topic=str(values['joint_states_topic']),
        command_topic=str(values['command_topic']),
        rgb_compressed=bool(values['rgb_compressed']),
        image_qos_reliable=bool(values['image_qos_reliable']),
        control_rate_hz=float(values['control_rate_hz']),
        action_horizon=int(values['action_horizon']),
        max_obs_age_s=float(values['max_obs_age_s']),
        joint_names=joint_names,
        limits=limits,
        handover=handover,
        enabled_on_start=bool(values['enabled_on_start']),
        dry_run=bool(values['dry_run']),
        base_frame=str(values['base_frame']).strip(),
        use_frame_cache=bool(values['use_frame_cache']),
        torchscript=bool(values['torchscript']),
        trigger_on_rgb=bool(values['trigger_on_rgb']),
        diagnostics_period_s=float(values['diagnostics_period_s']),
    )


def default_values() -> dict[str, Any]:
    """Return ``{name: default}`` of every parameter (lists copied)."""
    return {p.name: list(p.default) if isinstance(p.default, list) else p.default for p in PARAMS}


@dataclass(frozen=True)
class JointMapping:
    """
    How checkpoint joints relate to robot joints.

    ``robot_names[i]`` is the robot (``/joint_states``) name of checkpoint joint ``i``;
    ``command_names`` the names of the command in controller order; ``command_index[c]`` the
    checkpoint joint published at command position ``c``.
    """

    robot_names: tuple[str, ...]
    command_names: tuple[str, ...]
    command_index: tuple[int, ...]


def resolve_joint_mapping(
    param_names: Sequence[str], checkpoint_names: Sequence[str]
) -> JointMapping:
    """
    Map the ``joint_names`` parameter onto the checkpoint's joint names.

    Empty: the checkpoint names, in checkpoint order. A permutation of the checkpoint names: the
    command uses that order. Anything else (same count): position ``i`` renames checkpoint joint
    ``i`` (e.g. ``left_joint_1``...), and the command uses that order.
    """
    ckpt = tuple(str(n) for n in checkpoint_names)
    names = tuple(str(n) for n in param_names)
    if not names:
        return JointMapping(ckpt, ckpt, tuple(range(len(ckpt))))
    if len(names) != len(ckpt):
        raise ConfigError(
            f"parameter 'joint_names': {len(names)} names {list(names)} for a checkpoint with "
            f'{len(ckpt)} joints {list(ckpt)}'
        )
    if set(names) == set(ckpt):
        return JointMapping(ckpt, names, tuple(ckpt.index(n) for n in names))
    return JointMapping(names, names, tuple(range(len(names))))
