"""
``Gen3Sim``: the simulated Kinova Gen3 reaching scene, pure Python + MuJoCo (no ROS).

One episode = one seed: the seed fixes the start pose (Gen3 "home" plus a small uniform
perturbation) and the position and yaw of the red target cube on the table (and, with
``SceneConfig.distractor``, those of the distractor, from a random stream of its own so the rest
of the episode is the same with and without it). Physics runs at
``SceneConfig.physics_dt``; ``step`` holds one joint command for a given duration.

Joint angles are reported the way the Kortex driver reports them: wrapped to [-π, π) for the
continuous joints (1, 3, 5, 7). Commands may use any 2π representation of a continuous joint:
each command is mapped to the equivalent angle nearest the current servo reference, so a
continuous joint follows a command stream through ±π without spinning around.
"""

from dataclasses import dataclass, field

from kinova_policy_ros.core import kinematics as kin
from kinova_policy_ros.core.errors import ConfigError
from kinova_policy_ros.sim.mjcf import build_mjcf, SceneConfig, TCP_OFFSET_2F85
import mujoco
import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

GRIPPER_JOINT = 'robotiq_85_left_knuckle_joint'
TCP_OFFSET = TCP_OFFSET_2F85
"""The default tool centre point offset (m along the tool z), the Robotiq 2F-85's."""


@dataclass(frozen=True)
class CameraIntrinsics:
    """What ``sensor_msgs/CameraInfo`` carries for the simulated camera (no distortion)."""

    width: int
    height: int
    K: FloatArray
    D: FloatArray = field(default_factory=lambda: np.zeros(5))
    distortion_model: str = 'plumb_bob'
    frame_id: str = 'camera_color_optical_frame'

    @property
    def P(self) -> FloatArray:
        """Projection matrix ``[3, 4]`` of a monocular camera: ``[K | 0]``."""
        return np.hstack([self.K, np.zeros((3, 1))])


def tcp_point(ee: npt.ArrayLike, offset: float) -> FloatArray:
    """Point ``offset`` metres along the z axis of the pose ``ee`` ``[4, 4]`` (its TCP)."""
    return kin.point_along_z(ee, offset)


def intrinsics_from_fovy(width: int, height: int, fovy_deg: float) -> FloatArray:
    """
    Pinhole matrix K of a MuJoCo camera with vertical field of view ``fovy_deg``.

    MuJoCo pixels are square; the principal point is the image centre in the ROS convention
    (pixel ``i`` covers ``[i - 0.5, i + 0.5]``), i.e. ``((W - 1) / 2, (H - 1) / 2)``.
    """
    f = (height / 2.0) / np.tan(np.deg2rad(fovy_deg) / 2.0)
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


DISTRACTOR_STREAM = 0x64697374
"""Second entropy word of the distractor's random stream (``default_rng([seed, this])``)."""
DISTRACTOR_TRIES = 1000


@dataclass(frozen=True)
class EpisodeSpec:
    """
    What a seed fixes: the start joint positions, the target position and yaw.

    ``distractor`` is the centre of the distractor object (``None`` without one), with its yaw.
    """

    seed: int
    q0: FloatArray
    target: FloatArray
    target_yaw: float
    distractor: FloatArray | None = None
    distractor_yaw: float = 0.0


def min_distractor_distance(scene: SceneConfig) -> float:
    """
    Least distance (m, on the table) of the distractor's centre from the target's.

    The two footprints' circumscribed circles plus ``distractor_clearance``: the objects never
    overlap, whatever their yaw.
    """
    return float(
        np.sqrt(2.0) * (scene.cube_half_size + scene.distractor_half_size)
        + scene.distractor_clearance
    )


def draw_distractor(seed: int, scene: SceneConfig, target: FloatArray) -> tuple[FloatArray, float]:
    """
    Draw the distractor of episode ``seed``: ``(centre, yaw)``, a deterministic function of it.

    Uniform in the target region ``target_x`` x ``target_y`` (rejection sampling) at least
    :func:`min_distractor_distance` from ``target``; its own random stream, so the target and
    the start pose do not depend on it. ConfigError when the region has no room for it.
    """
    rng = np.random.default_rng([seed, DISTRACTOR_STREAM])
    least = min_distractor_distance(scene)
    for _ in range(DISTRACTOR_TRIES):
        x = rng.uniform(*scene.target_x)
        y = rng.uniform(*scene.target_y)
        if np.hypot(x - target[0], y - target[1]) >= least:
            yaw = float(rng.uniform(-np.pi / 4, np.pi / 4))
            return np.array([x, y, scene.table_height + scene.distractor_half_size]), yaw
    raise ConfigError(
        f'SceneConfig.distractor: no place {least:.3f} m from the target {target[:2].tolist()} '
        f'in target_x {scene.target_x} x target_y {scene.target_y} (seed {seed})'
    )


def episode_spec(seed: int, scene: SceneConfig, start_noise: float) -> EpisodeSpec:
    """Draw the start pose and the target of episode ``seed`` (deterministic, no MuJoCo)."""
    if seed < 0:
        raise ConfigError(f'seed must be >= 0, got {seed}')
    rng = np.random.default_rng(seed)
    x = rng.uniform(*scene.target_x)
    y = rng.uniform(*scene.target_y)
    yaw = float(rng.uniform(-np.pi / 4, np.pi / 4))
    noise = rng.uniform(-start_noise, start_noise, size=kin.NUM_JOINTS)
    q0 = kin.clip_to_limits(kin.HOME + noise, margin=0.05)
    target = np.array([x, y, scene.table_height + scene.cube_half_size])
    if scene.distractor == 'none':
        return EpisodeSpec(seed=seed, q0=q0, target=target, target_yaw=yaw)
    where, turn = draw_distractor(seed, scene, target)
    return EpisodeSpec(seed, q0, target, yaw, distractor=where, distractor_yaw=turn)


class Gen3Sim:
    """
    The simulated reaching scene.

    :param scene: geometry, camera and servo gains.
    :param start_noise: half-width (rad) of the uniform perturbation of the home start pose.
    :param success_threshold: tool centre point to target distance (m) counted as success.
    :param render: create the offscreen renderer (needs EGL or OSMesa; set ``MUJOCO_GL``).
    """

    def __init__(
        self,
        scene: SceneConfig | None = None,
        start_noise: float = 0.1,
        success_threshold: float = 0.03,
        render: bool = True,
    ) -> None:
        self.scene = scene or SceneConfig()
        if self.scene.image_width <= 0 or self.scene.image_height <= 0:
            raise ConfigError(
                f'image size must be positive, got {self.scene.image_width}x'
                f'{self.scene.image_height}'
            )
        if start_noise < 0:
            raise ConfigError(f'start_noise must be >= 0, got {start_noise}')
        self.start_noise = float(start_noise)
        self.success_threshold = float(success_threshold)
        self.model = mujoco.MjModel.from_xml_string(build_mjcf(self.scene))
        self.data = mujoco.MjData(self.model)
        self._qadr = np.array(
            [self.model.joint(name).qposadr[0] for name in kin.JOINT_NAMES], dtype=np.intp
        )
        self._vadr = np.array(
            [self.model.joint(name).dofadr[0] for name in kin.JOINT_NAMES], dtype=np.intp
        )
        self._actuator = {
            str(self.model.actuator(i).name).removesuffix('_servo'): i
            for i in range(self.model.nu)
        }
        self._ee_site = self.model.site('end_effector').id
        self._camera = self.model.camera('rgbd').id
        self._depth_camera = self.model.camera('depth').id
        self._distractor = -1  # mocap index of the distractor body (-1: none)
        if self.scene.distractor != 'none':
            self._distractor = int(self.model.body('distractor').mocapid[0])
        self._ff_gain = self.scene.kv / self.scene.kp
        self._renderer: mujoco.Renderer | None = None
        self._depth_renderer: mujoco.Renderer | None = None
        if render:
            self._renderer = mujoco.Renderer(
                self.model, height=self.scene.image_height, width=self.scene.image_width
            )
            dw, dh = self.scene.depth_size
            if (dw, dh) != (self.scene.image_width, self.scene.image_height):
                self._depth_renderer = mujoco.Renderer(self.model, height=dh, width=dw)
        self._ref = kin.HOME.copy()
        self.episode = episode_spec(0, self.scene, self.start_noise)
        self.reset(0)

    # -- episode -------------------------------------------------------------------------------
    def reset(self, seed: int) -> EpisodeSpec:
        """Start episode ``seed``: arm at rest at its start pose, target on the table."""
        spec = episode_spec(int(seed), self.scene, self.start_noise)
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[self._qadr] = spec.q0
        self.data.qvel[self._vadr] = 0.0
        self.data.mocap_pos[0] = spec.target
        half = spec.target_yaw / 2
        self.data.mocap_quat[0] = [np.cos(half), 0.0, 0.0, np.sin(half)]
        if spec.distractor is not None:
            self.data.mocap_pos[self._distractor] = spec.distractor
            half = spec.distractor_yaw / 2
            self.data.mocap_quat[self._distractor] = [np.cos(half), 0.0, 0.0, np.sin(half)]
        self._ref = spec.q0.copy()
        self.data.ctrl[:] = spec.q0
        mujoco.mj_forward(self.model, self.data)
        self.episode = spec
        return spec

    def place_arm(self, q: npt.ArrayLike) -> None:
        """Put the arm at rest at joint positions ``q`` [7] (e.g. another start pose)."""
        q = kin.clip_to_limits(np.asarray(q, dtype=np.float64), margin=0.0)
        self.data.qpos[self._qadr] = q
        self.data.qvel[self._vadr] = 0.0
        self._ref = q.copy()
        self.data.ctrl[:] = q
        mujoco.mj_forward(self.model, self.data)

    @property
    def time(self) -> float:
        """Return the simulated time since the reset, seconds."""
        return float(self.data.time)

    @property
    def time_ns(self) -> int:
        """Return the simulated time since the reset, integer nanoseconds."""
        return round(float(self.data.time) * 1e9)

    # -- control -------------------------------------------------------------------------------
    def step(
        self,
        q_des: npt.ArrayLike,
        dq_des: npt.ArrayLike | None = None,
        duration: float | None = None,
    ) -> None:
        """
        Servo the arm towards ``q_des`` (with velocity feed-forward ``dq_des``) for ``duration``.

        The servo reference moves no faster than the Gen3 velocity limits and stays inside the
        position limits; continuous joints take the 2π-equivalent of ``q_des`` nearest to the
        current reference. ``duration`` defaults to one physics step and is rounded to whole
        physics steps (at least one).
        """
        q = np.asarray(q_des, dtype=np.float64)
        if q.shape != (kin.NUM_JOINTS,) or not np.isfinite(q).all():
            raise ValueError(f'q_des must be 7 finite values, got {q!r}')
        dq = np.zeros(kin.NUM_JOINTS) if dq_des is None else np.asarray(dq_des, np.float64)
        if dq.shape != (kin.NUM_JOINTS,) or not np.isfinite(dq).all():
            raise ValueError(f'dq_des must be 7 finite values, got {dq!r}')
        dt = self.model.opt.timestep
        steps = max(1, round((dt if duration is None else duration) / dt))
        target = kin.clip_to_limits(kin.nearest_equivalent(q, self._ref))
        dq = np.clip(dq, -kin.VELOCITY_LIMITS, kin.VELOCITY_LIMITS)
        for _ in range(steps):
            max_step = kin.VELOCITY_LIMITS * dt
            self._ref = self._ref + np.clip(target - self._ref, -max_step, max_step)
            self.data.ctrl[:] = self._ref + self._ff_gain * dq
            mujoco.mj_step(self.model, self.data)

    def hold(self, duration: float | None = None) -> None:
        """Keep the current servo reference for ``duration`` (default one physics step)."""
        self.step(self._ref, None, duration)

    # -- state ---------------------------------------------------------------------------------
    def joint_positions(self, wrapped: bool = True) -> FloatArray:
        """Arm joint positions ``[7]`` (continuous joints wrapped to [-π, π) by default)."""
        q: FloatArray = np.array(self.data.qpos[self._qadr], dtype=np.float64)
        if wrapped:
            q[kin.CONTINUOUS] = kin.wrap_to_pi(q[kin.CONTINUOUS])
        return q

    def joint_velocities(self) -> FloatArray:
        """Arm joint velocities ``[7]``, rad/s."""
        return np.array(self.data.qvel[self._vadr], dtype=np.float64)

    def joint_efforts(self, names: tuple[str, ...] = kin.JOINT_NAMES) -> FloatArray:
        """
        Actuator force (N m) of each joint in ``names``: the servo torque of the last step.

        A joint without an actuator in the model (e.g. a gripper joint) reads 0.
        """
        force = self.data.actuator_force
        return np.array(
            [float(force[self._actuator[n]]) if n in self._actuator else 0.0 for n in names],
            dtype=np.float64,
        )

    def ee_matrix(self) -> FloatArray:
        """Homogeneous pose of ``end_effector_link`` in ``base_link``."""
        t = np.eye(4)
        t[:3, :3] = self.data.site_xmat[self._ee_site].reshape(3, 3)
        t[:3, 3] = self.data.site_xpos[self._ee_site] - [0.0, 0.0, self.scene.table_height]
        return t

    def ee_pose(self) -> tuple[FloatArray, FloatArray]:
        """End-effector ``(xyz, rpy)`` in ``base_link``."""
        t = self.ee_matrix()
        return t[:3, 3], kin.matrix_to_rpy(t[:3, :3])

    def target_position(self) -> FloatArray:
        """Centre of the target cube in ``base_link``, m."""
        pos: FloatArray = np.array(self.data.mocap_pos[0], dtype=np.float64)
        return pos - [0.0, 0.0, self.scene.table_height]

    def distractor_position(self) -> FloatArray | None:
        """Centre of the distractor in ``base_link`` (m), ``None`` without one (never a target)."""
        if self._distractor < 0:
            return None
        pos: FloatArray = np.array(self.data.mocap_pos[self._distractor], dtype=np.float64)
        return pos - [0.0, 0.0, self.scene.table_height]

    def tcp_position(self) -> FloatArray:
        """Tool centre point (``SceneConfig.tcp_offset`` along the tool z) in ``base_link``."""
        return tcp_point(self.ee_matrix(), self.scene.tcp_offset)

    def task_fields(self) -> dict[str, object]:
        """Return the task state (distances, success, target, flange and TCP positions)."""
        return {
            'seed': self.episode.seed,
            'distance': self.distance(),
            'distance_flange': self.flange_distance(),
            'success': self.success(),
            'success_threshold': self.success_threshold,
            'tcp_offset': self.scene.tcp_offset,
            'target': [float(v) for v in self.target_position()],
            'ee': [float(v) for v in self.ee_matrix()[:3, 3]],
            'tcp': [float(v) for v in self.tcp_position()],
        }

    def distance(self) -> float:
        """Distance from the tool centre point (between the fingertips) to the target, m."""
        return float(np.linalg.norm(self.tcp_position() - self.target_position()))

    def flange_distance(self) -> float:
        """Distance from ``end_effector_link`` (the flange) to the target centre, m."""
        return float(np.linalg.norm(self.ee_matrix()[:3, 3] - self.target_position()))

    def success(self) -> bool:
        """Whether the tool centre point is within ``success_threshold`` of the target."""
        return self.distance() <= self.success_threshold

    # -- camera --------------------------------------------------------------------------------
    def camera_info(self) -> CameraIntrinsics:
        """Intrinsics of the rendered colour image."""
        s = self.scene
        return CameraIntrinsics(
            width=s.image_width,
            height=s.image_height,
            K=intrinsics_from_fovy(s.image_width, s.image_height, s.camera_fovy_deg),
            frame_id=s.camera_frame_id,
        )

    def depth_camera_info(self) -> CameraIntrinsics:
        """Intrinsics of the rendered depth image (its own camera, size and frame id)."""
        s = self.scene
        width, height = s.depth_size
        return CameraIntrinsics(
            width=width,
            height=height,
            K=intrinsics_from_fovy(width, height, s.depth_fovy),
            frame_id=s.depth_frame,
        )

    def camera_pose(self) -> FloatArray:
        """Pose ``[4, 4]`` of the ROS optical frame (z forward, y down) in ``base_link``."""
        t = np.eye(4)
        rot = self.data.cam_xmat[self._camera].reshape(3, 3)
        t[:3, :3] = rot @ np.diag([1.0, -1.0, -1.0])
        t[:3, 3] = self.data.cam_xpos[self._camera] - [0.0, 0.0, self.scene.table_height]
        return t

    def render(self) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32]]:
        """
        Render the cameras: ``rgb`` uint8 ``[H, W, 3]`` and ``depth`` float32 ``[Hd, Wd]`` metres.

        Colour comes from camera ``rgbd``, depth from camera ``depth`` (same pose, its own size
        and field of view). Depth is the distance along the optical axis; 0 where nothing is
        within ``SceneConfig.depth_far``.
        """
        if self._renderer is None:
            raise RuntimeError('Gen3Sim was created with render=False')
        r = self._renderer
        r.update_scene(self.data, camera=self._camera)
        rgb = r.render().copy()
        if self._depth_renderer is not None:
            r = self._depth_renderer
        r.update_scene(self.data, camera=self._depth_camera)
        r.enable_depth_rendering()
        try:
            depth = r.render().astype(np.float32)
        finally:
            r.disable_depth_rendering()
        depth[~(depth < self.scene.depth_far * 0.999)] = 0.0
        return rgb, depth

    def close(self) -> None:
        """Free the renderer (its GL context)."""
        for renderer in (self._renderer, self._depth_renderer):
            if renderer is not None:
                renderer.close()
        self._renderer = self._depth_renderer = None

    def __enter__(self) -> 'Gen3Sim':
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
