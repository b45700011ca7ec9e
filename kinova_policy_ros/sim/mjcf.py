"""
MJCF model of the simulated scene: a capsule Kinova Gen3 on a table, a red target cube, a camera.

The arm is built from the ros2_kortex URDF joint table (``kinematics.URDF_CHAIN``,
docs/gen3.md), so the MuJoCo forward kinematics equals ``kinematics.fk``. Each arm joint is a
hinge about its local z axis with the Gen3 position limits on joints 2, 4 and 6 (1, 3, 5, 7
are continuous), driven by a
position actuator. The arm does not collide with anything (the task is reaching, not grasping),
gravity is off (the real Gen3 compensates it in firmware). Shadows and offscreen multisampling are
off: on a CPU renderer (llvmpipe) shadows cost ~20x and 4x MSAA ~2.5x the render time of a
128x96 RGB + depth frame (bench/bench_sim.py).

The scene can be shifted the way a real cell differs from it (docs/robustness.md): the light
intensity and direction, a camera mounting offset, the cube size and colour, and a distractor
object on the table. Every default reproduces the nominal scene exactly.
"""

from dataclasses import dataclass
import math

from kinova_policy_ros.core import kinematics as kin
from kinova_policy_ros.core.errors import ConfigError
import numpy as np
import numpy.typing as npt

Vec3 = tuple[float, float, float]
Rgba = tuple[float, float, float, float]

CUBE_RGBA: Rgba = (0.85, 0.08, 0.08, 1.0)
"""Colour of the target cube (red)."""
LIGHT_DIR: Vec3 = (-0.3, -0.3, -1.0)
"""Direction of the scene's directional key light (base_link frame)."""
DISTRACTOR_SHAPES = ('none', 'box', 'cylinder')
"""Values of ``SceneConfig.distractor``: ``none`` (no distractor) or its geometry."""

TCP_OFFSET_2F85 = 0.1086
"""
Tool centre point of a Robotiq 2F-85 on the Gen3, metres along ``end_effector_link`` z.

ros2_kortex mounts ``robotiq_85_base_link`` at ``end_effector_link`` (origin 0,
kortex_description/grippers/robotiq_2f_85/urdf/robotiq_2f_85_macro.xacro); in the gripper's
description (PickNikRobotics/ros2_robotiq_gripper, robotiq_description/urdf/
robotiq_2f_85_macro.urdf.xacro) the finger-tip links sit 0.06142 (inner knuckle joint) +
0.04718515 (finger-tip joint) = 0.1086 m along z from that base, gripper open.
"""


@dataclass(frozen=True)
class SceneConfig:
    """
    Geometry of the scene, the camera and the controller gains.

    The camera looks from ``camera_pos`` at ``camera_lookat`` (base_link frame, metres) with a
    vertical field of view ``camera_fovy_deg``; images are ``image_width`` x ``image_height``.
    Depth comes from a second camera at the same pose (MuJoCo camera ``depth``) with its own
    size, field of view and frame id; ``None`` (the default) means the colour stream's value.
    ``tcp_offset`` is the tool centre point between the fingertips, metres along the z axis of
    ``end_effector_link`` (default: the Robotiq 2F-85, ``TCP_OFFSET_2F85``).
    Targets are drawn uniformly in ``target_x`` x ``target_y`` on the table top.

    Shifts (docs/robustness.md; the defaults are the nominal scene): ``light_scale`` multiplies
    the intensity of every light (the headlight's ambient, diffuse and specular, the key light's
    diffuse), ``light_dir`` is the direction of the directional key light. The camera mounting
    offset moves both cameras (colour and depth share the pose): ``camera_offset_m`` is added to
    ``camera_pos`` (base_link frame, m), ``camera_offset_deg`` rotates the camera about the axes
    of its ROS optical frame (x right, y down, z forward), degrees, applied in that order
    (intrinsic x-y-z): x tilts the view (pitch), y pans it (yaw), z rolls it. ``cube_half_size``
    and ``cube_rgba`` are the target cube's (its centre is the target, ``half size`` above the
    table). ``distractor`` (``none``, ``box`` or ``cylinder``) adds a second object of colour
    ``distractor_rgba`` and half size ``distractor_half_size`` at a seeded place on the table
    (``env.episode_spec``), at least ``distractor_clearance`` m from the target cube's edge; it is
    never the target and never counts for success.
    """

    image_width: int = 128
    image_height: int = 96
    camera_pos: Vec3 = (1.05, -0.75, 0.95)
    camera_lookat: Vec3 = (0.38, 0.0, 0.15)
    camera_fovy_deg: float = 50.0
    camera_frame_id: str = 'camera_color_optical_frame'
    table_height: float = 0.0
    cube_half_size: float = 0.03
    target_x: tuple[float, float] = (0.35, 0.62)
    target_y: tuple[float, float] = (-0.22, 0.22)
    physics_dt: float = 0.002
    joint_armature: float = 0.2
    tracking_bandwidth: float = 40.0
    depth_near: float = 0.05
    depth_far: float = 4.0
    depth_width: int | None = None
    depth_height: int | None = None
    depth_fovy_deg: float | None = None
    depth_frame_id: str | None = None
    tcp_offset: float = TCP_OFFSET_2F85
    light_scale: float = 1.0
    light_dir: Vec3 = LIGHT_DIR
    camera_offset_m: Vec3 = (0.0, 0.0, 0.0)
    camera_offset_deg: Vec3 = (0.0, 0.0, 0.0)
    cube_rgba: Rgba = CUBE_RGBA
    distractor: str = 'none'
    distractor_rgba: Rgba = (0.1, 0.3, 0.85, 1.0)
    distractor_half_size: float = 0.03
    distractor_clearance: float = 0.03

    def __post_init__(self) -> None:
        """Validate the shift options (ConfigError naming the field and the value)."""
        _check_positive('cube_half_size', self.cube_half_size)
        _check_positive('light_scale', self.light_scale)
        _check_vector('light_dir', self.light_dir, 3)
        if not self.light_dir[2] < 0:
            raise ConfigError(
                f'SceneConfig.light_dir: {self.light_dir!r} must point down (z < 0)'
            )
        _check_vector('camera_offset_m', self.camera_offset_m, 3, bound=0.5)
        _check_vector('camera_offset_deg', self.camera_offset_deg, 3, bound=45.0)
        for name in ('cube_rgba', 'distractor_rgba'):
            rgba = getattr(self, name)
            _check_vector(name, rgba, 4)
            if not all(0.0 <= v <= 1.0 for v in rgba) or not rgba[3] > 0:
                raise ConfigError(
                    f'SceneConfig.{name}: {rgba!r} must be 4 values in [0, 1], alpha > 0'
                )
        if self.distractor not in DISTRACTOR_SHAPES:
            raise ConfigError(
                f'SceneConfig.distractor: {self.distractor!r} is not one of '
                f'{list(DISTRACTOR_SHAPES)}'
            )
        _check_positive('distractor_half_size', self.distractor_half_size)
        if not (math.isfinite(self.distractor_clearance) and self.distractor_clearance >= 0):
            raise ConfigError(
                f'SceneConfig.distractor_clearance: {self.distractor_clearance!r} must be >= 0'
            )

    @property
    def depth_size(self) -> tuple[int, int]:
        """``(width, height)`` of the depth image."""
        return (
            self.image_width if self.depth_width is None else self.depth_width,
            self.image_height if self.depth_height is None else self.depth_height,
        )

    @property
    def depth_fovy(self) -> float:
        """Vertical field of view (degrees) of the depth camera."""
        return self.camera_fovy_deg if self.depth_fovy_deg is None else self.depth_fovy_deg

    @property
    def depth_frame(self) -> str:
        """Header frame id of the depth image and its CameraInfo."""
        return self.camera_frame_id if self.depth_frame_id is None else self.depth_frame_id

    @property
    def kp(self) -> float:
        """Position gain (N m / rad) of the critically damped joint servo."""
        return self.joint_armature * self.tracking_bandwidth**2

    @property
    def kv(self) -> float:
        """Velocity gain (N m s / rad) of the critically damped joint servo."""
        return 2.0 * self.joint_armature * self.tracking_bandwidth


def _check_positive(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ConfigError(f'SceneConfig.{name}: {value!r} must be a finite number > 0')


def _check_vector(name: str, value: object, size: int, bound: float | None = None) -> None:
    """Require ``size`` finite numbers (each of magnitude <= ``bound`` when given)."""
    ok = (
        isinstance(value, tuple | list)
        and len(value) == size
        and all(isinstance(v, int | float) and math.isfinite(v) for v in value)
    )
    if not ok:
        raise ConfigError(f'SceneConfig.{name}: {value!r} must be {size} finite numbers')
    assert isinstance(value, tuple | list)
    if bound is not None and max(abs(v) for v in value) > bound:
        raise ConfigError(f'SceneConfig.{name}: {value!r} exceeds {bound:g} in magnitude')


def _quat_from_matrix(r: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Return the unit quaternion (w, x, y, z) of a rotation matrix (MuJoCo's order)."""
    return np.roll(kin.matrix_to_quaternion(r), 1)


def _fmt(values: npt.ArrayLike) -> str:
    return ' '.join(f'{float(v):.9g}' for v in np.ravel(values))


def optical_rotation(degrees: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """
    Rotation ``[3, 3]`` of a camera mounting offset in its ROS optical frame.

    ``degrees`` = (about x, about y, about z) of the optical frame (x right, y down, z forward),
    applied in that order (intrinsic): ``Rx @ Ry @ Rz``.
    """
    ax, ay, az = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]])
    ry = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    rz = np.array([[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]])
    rot: npt.NDArray[np.float64] = rx @ ry @ rz
    return rot


def camera_position(config: SceneConfig) -> npt.NDArray[np.float64]:
    """Position of both cameras: ``camera_pos`` plus the mounting offset ``camera_offset_m``."""
    pos = np.asarray(config.camera_pos, dtype=np.float64)
    if any(config.camera_offset_m):
        pos = pos + np.asarray(config.camera_offset_m, dtype=np.float64)
    return pos


def camera_axes(config: SceneConfig) -> npt.NDArray[np.float64]:
    """
    Rotation ``[3, 3]`` whose columns are the MuJoCo camera x (right), y (up), z (backward).

    MuJoCo cameras look along their -z axis; ROS optical frames look along +z with y down. The
    nominal camera looks from ``camera_pos`` at ``camera_lookat`` with a level x axis; the
    mounting offset ``camera_offset_deg`` then rotates it about its optical axes
    (:func:`optical_rotation`).
    """
    pos = np.asarray(config.camera_pos, dtype=np.float64)
    forward = np.asarray(config.camera_lookat, dtype=np.float64) - pos
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    axes = np.stack([right, up, -forward], axis=1)
    if any(config.camera_offset_deg):
        flip = np.diag([1.0, -1.0, -1.0])  # MuJoCo camera axes <-> ROS optical axes
        axes = axes @ flip @ optical_rotation(config.camera_offset_deg) @ flip
    return axes


def _arm_xml(config: SceneConfig) -> str:
    """Nested bodies of the Gen3 arm, one per URDF link after base_link."""
    radius = (0.055, 0.05, 0.045, 0.045, 0.04, 0.04, 0.04)
    colours = ('0.75 0.75 0.78 1', '0.3 0.3 0.33 1')
    chain = kin.URDF_CHAIN
    opened = []
    for i, joint in enumerate(chain):
        quat = _quat_from_matrix(kin.rpy_to_matrix(joint.rpy))
        nxt = chain[i + 1].xyz if i + 1 < len(chain) else kin.END_EFFECTOR_ORIGIN.xyz
        limited = not kin.CONTINUOUS[i]
        rng = (
            f' limited="true" range="{kin.POSITION_LOWER[i]:.6g} {kin.POSITION_UPPER[i]:.6g}"'
            if limited
            else ' limited="false"'
        )
        body = [
            f'<body name="{joint.child}" pos="{_fmt(joint.xyz)}" quat="{_fmt(quat)}">',
            f'<joint name="{joint.name}" type="hinge" axis="0 0 1"{rng}'
            f' armature="{config.joint_armature:.6g}" damping="0.0"/>',
            f'<geom name="{joint.child}_joint" type="cylinder" size="{radius[i]:.4g} 0.03"'
            f' rgba="{colours[1]}" mass="0.02"/>',
        ]
        if np.linalg.norm(nxt) > 1e-6:
            body.append(
                f'<geom name="{joint.child}_link" type="capsule" fromto="0 0 0 {_fmt(nxt)}"'
                f' size="{radius[i] * 0.85:.4g}" rgba="{colours[0]}" mass="0.1"/>'
            )
        opened.append('\n'.join(body))
    ee = kin.END_EFFECTOR_ORIGIN
    ee_quat = _quat_from_matrix(kin.rpy_to_matrix(ee.rpy))
    # gripper: palm and two fingers along the tool z, the fingertips around the tool centre point
    tip = config.tcp_offset
    gripper = (
        f'<body name="{ee.child}" pos="{_fmt(ee.xyz)}" quat="{_fmt(ee_quat)}">'
        '<site name="end_effector" pos="0 0 0" size="0.008" rgba="0 1 0 0"/>'
        f'<site name="tcp" pos="0 0 {tip:.6g}" size="0.006" rgba="0 0 1 0"/>'
        f'<geom name="gripper_palm" type="box" pos="0 0 {tip / 4:.6g}"'
        f' size="0.045 0.02 {tip / 4:.6g}" rgba="0.15 0.15 0.15 1" mass="0.02"/>'
        f'<geom name="finger_left" type="box" pos="0.045 0 {tip * 0.75:.6g}"'
        f' size="0.008 0.012 {tip / 4:.6g}" rgba="0.1 0.1 0.1 1" mass="0.02"/>'
        f'<geom name="finger_right" type="box" pos="-0.045 0 {tip * 0.75:.6g}"'
        f' size="0.008 0.012 {tip / 4:.6g}" rgba="0.1 0.1 0.1 1" mass="0.02"/>'
        '</body>'
    )
    return '\n'.join(opened) + '\n' + gripper + '\n' + '</body>\n' * len(chain)


def _distractor_xml(cfg: SceneConfig) -> str:
    """Return the distractor's mocap body (placed by ``Gen3Sim.reset``), '' without one."""
    if cfg.distractor == 'none':
        return ''
    h = cfg.distractor_half_size
    size = _fmt([h] * 3) if cfg.distractor == 'box' else _fmt([h, h])
    return f"""
    <body name="distractor" mocap="true" pos="0.5 0.4 {cfg.table_height + h:.6g}">
      <geom name="distractor_geom" type="{cfg.distractor}" size="{size}"
        rgba="{_fmt(cfg.distractor_rgba)}"/>
    </body>"""


def build_mjcf(config: SceneConfig | None = None) -> str:
    """Return the MJCF (XML string) of the whole scene."""
    cfg = config or SceneConfig()
    axes = camera_axes(cfg)
    xyaxes = _fmt(np.concatenate([axes[:, 0], axes[:, 1]]))
    cam_pos = _fmt(camera_position(cfg))
    amb, dif, spec, key = (_fmt([v * cfg.light_scale] * 3) for v in (0.35, 0.45, 0.05, 0.5))
    table_top = cfg.table_height
    actuators = '\n'.join(
        f'<position name="{name}_servo" joint="{name}" kp="{cfg.kp:.6g}" kv="{cfg.kv:.6g}"/>'
        for name in kin.JOINT_NAMES
    )
    extent = 2.0
    return f"""<mujoco model="kinova_gen3_reach">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{cfg.physics_dt:.6g}" gravity="0 0 0" integrator="implicitfast">
    <flag contact="disable"/>
  </option>
  <statistic extent="{extent}" center="0.4 0 0.3"/>
  <visual>
    <global offwidth="{max(640, cfg.image_width, cfg.depth_size[0])}"
      offheight="{max(480, cfg.image_height, cfg.depth_size[1])}"/>
    <quality shadowsize="0" offsamples="0"/>
    <map znear="{cfg.depth_near / extent:.6g}" zfar="{cfg.depth_far / extent:.6g}"/>
    <headlight ambient="{amb}" diffuse="{dif}" specular="{spec}"/>
  </visual>
  <asset>
    <texture name="floor_tex" type="2d" builtin="checker" rgb1="0.42 0.42 0.45"
      rgb2="0.36 0.36 0.39" width="64" height="64"/>
    <material name="floor_mat" texture="floor_tex" texrepeat="6 6"/>
  </asset>
  <worldbody>
    <light name="key" directional="true" castshadow="false" pos="0.5 0.5 2"
      dir="{_fmt(cfg.light_dir)}" diffuse="{key}"/>
    <geom name="floor" type="plane" pos="0 0 {table_top - 0.75:.6g}" size="3 3 0.1"
      material="floor_mat"/>
    <geom name="table" type="box" pos="0.45 0 {table_top - 0.02:.6g}" size="0.45 0.6 0.02"
      rgba="0.62 0.5 0.36 1"/>
    <geom name="robot_base" type="cylinder" pos="0 0 0.06" size="0.06 0.06"
      rgba="0.3 0.3 0.33 1"/>
    <camera name="rgbd" pos="{cam_pos}" xyaxes="{xyaxes}"
      fovy="{cfg.camera_fovy_deg:.9g}"/>
    <camera name="depth" pos="{cam_pos}" xyaxes="{xyaxes}"
      fovy="{cfg.depth_fovy:.9g}"/>
    <body name="target" mocap="true" pos="0.5 0 {table_top + cfg.cube_half_size:.6g}">
      <geom name="target_cube" type="box" size="{_fmt([cfg.cube_half_size] * 3)}"
        rgba="{_fmt(cfg.cube_rgba)}"/>
    </body>{_distractor_xml(cfg)}
    <body name="base_link" pos="0 0 {table_top:.6g}">
{_arm_xml(cfg)}
    </body>
  </worldbody>
  <actuator>
{actuators}
  </actuator>
</mujoco>
"""
