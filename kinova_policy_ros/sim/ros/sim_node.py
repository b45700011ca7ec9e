"""
``sim_node``: the simulated Kinova Gen3 + fixed RGB-D camera as a ROS 2 node (MuJoCo).

Publishes what ros2_kortex and a camera driver publish, and follows JointTrajectory commands
with joint_trajectory_controller semantics (``sim.trajectory``):

- ``/joint_states`` (``sensor_msgs/JointState``; joint_1..7 + a gripper joint, non-sorted
  order, continuous joints wrapped to [-π, π), positions, velocities and efforts: the servo
  torques of the arm joints, 0 for the gripper joint, which the simulator does not actuate)
  at ``joint_state_rate_hz`` (100);
- ``/camera/color/image_raw`` (rgb8), ``/camera/depth/image_raw`` (16UC1, mm),
  ``/camera/color/camera_info`` and ``/camera/depth/camera_info`` at ``camera_rate_hz`` (the
  profile's rate), header stamps taken when the frame is rendered; ``camera_profile`` picks the
  camera (``sim.camera``: ``small``, or ``kinova_vision`` with colour and depth of their own
  sizes, intrinsics and frame ids);
- ``~/task_state`` (``std_msgs/String``, JSON: seed, episode counter (+1 at every reset),
  distance of the tool centre point to the target and success, the flange's distance,
  target, counts of accepted / rejected trajectories and the last rejection reason);
- subscribes ``/joint_trajectory_controller/joint_trajectory``;
- services ``~/reset`` (``std_srvs/Trigger``: next episode, seed + 1) and ``~/reset_to_seed``
  (``std_srvs/Trigger``: the episode of the ``seed`` parameter, e.g. after
  ``ros2 param set /sim_node seed 42``). Both answer with the episode as JSON.

Physics runs at ``SceneConfig.physics_dt`` (2 ms), stepped in batches on a timer so that the
simulated time follows the node clock.

The module also builds the messages themselves (``joint_state_msg``, ``rgb_msg``, ...), shared with
the expert node and the recorders so that bags recorded over DDS and bags written offline hold
the same bytes.
"""

from collections.abc import Sequence
import json
import sys
from typing import Any

from kinova_policy_ros.core import image_codec
from kinova_policy_ros.core import kinematics as kin
from kinova_policy_ros.core.errors import ConfigError
from kinova_policy_ros.core.stamps import stamp_to_ns
from kinova_policy_ros.ros.messages import duration_msg, now_ns, time_msg
from kinova_policy_ros.sim.camera import camera_profile, CameraProfile, DEFAULT_PROFILE
from kinova_policy_ros.sim.env import CameraIntrinsics, Gen3Sim, GRIPPER_JOINT
from kinova_policy_ros.sim.expert import JointPlan
from kinova_policy_ros.sim.mjcf import SceneConfig
from kinova_policy_ros.sim.ros.node_runner import run_node as run_node
from kinova_policy_ros.sim.trajectory import (
    TrajectoryCommand,
    TrajectoryFollower,
    TrajectoryRejected,
)
import numpy as np
import numpy.typing as npt
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

# a fixed, non-sorted order like the hash order of /joint_states on Humble
JOINT_STATE_ORDER: tuple[str, ...] = (
    'joint_3',
    GRIPPER_JOINT,
    'joint_1',
    'joint_7',
    'joint_2',
    'joint_5',
    'joint_4',
    'joint_6',
)

DEFAULT_TOPICS: dict[str, str] = {
    'joint_states': '/joint_states',
    'rgb': '/camera/color/image_raw',
    'depth': '/camera/depth/image_raw',
    'camera_info': '/camera/color/camera_info',
    'depth_camera_info': '/camera/depth/camera_info',
    'command': '/joint_trajectory_controller/joint_trajectory',
    'task_state': '/sim_node/task_state',
}

TOPIC_TYPES: dict[str, type] = {
    'joint_states': JointState,
    'rgb': Image,
    'depth': Image,
    'camera_info': CameraInfo,
    'depth_camera_info': CameraInfo,
    'command': JointTrajectory,
    'task_state': String,
}


def joint_state_msg(
    stamp_ns: int,
    q: npt.ArrayLike,
    dq: npt.ArrayLike,
    gripper_position: float = 0.0,
    order: Sequence[str] = JOINT_STATE_ORDER,
    frame_id: str = '',
    effort: bool | npt.ArrayLike = False,
) -> JointState:
    """
    ``sensor_msgs/JointState`` with the arm joints and the gripper joint in ``order``.

    ``q``, ``dq`` and an ``effort`` array are in ``kin.JOINT_NAMES`` order and placed by name.
    ``effort=True`` writes zeros; without ``effort`` the effort field is empty, as
    joint_state_broadcaster publishes it for hardware without effort interfaces (mock hardware);
    rclpy then serializes the message with 8 trailing padding bytes, which bag readers must
    accept.
    """
    qa, dqa = np.asarray(q, dtype=np.float64), np.asarray(dq, dtype=np.float64)
    pos = {n: float(v) for n, v in zip(kin.JOINT_NAMES, qa)}
    vel = {n: float(v) for n, v in zip(kin.JOINT_NAMES, dqa)}
    msg = JointState()
    msg.header.stamp = time_msg(stamp_ns)
    msg.header.frame_id = frame_id
    msg.name = list(order)
    msg.position = [pos.get(n, gripper_position) for n in order]
    msg.velocity = [vel.get(n, 0.0) for n in order]
    if isinstance(effort, bool):
        msg.effort = [0.0] * len(order) if effort else []
    else:
        eff = {n: float(v) for n, v in zip(kin.JOINT_NAMES, np.asarray(effort, np.float64))}
        msg.effort = [eff.get(n, 0.0) for n in order]
    return msg


def rgb_msg(stamp_ns: int, rgb: npt.NDArray[np.uint8], frame_id: str) -> Image:
    """``sensor_msgs/Image`` rgb8."""
    msg = Image()
    msg.header.stamp = time_msg(stamp_ns)
    msg.header.frame_id = frame_id
    return image_codec.fill_image_msg(msg, image_codec.encode_rgb8(rgb))


def depth_msg(stamp_ns: int, depth_m: npt.NDArray[np.float32], frame_id: str) -> Image:
    """``sensor_msgs/Image`` 16UC1 in millimetres (0 = no return)."""
    msg = Image()
    msg.header.stamp = time_msg(stamp_ns)
    msg.header.frame_id = frame_id
    return image_codec.fill_image_msg(msg, image_codec.encode_depth(depth_m, '16UC1'))


def camera_info_msg(stamp_ns: int, info: CameraIntrinsics) -> CameraInfo:
    """``sensor_msgs/CameraInfo`` of the simulated pinhole camera."""
    msg = CameraInfo()
    msg.header.stamp = time_msg(stamp_ns)
    msg.header.frame_id = info.frame_id
    msg.width = info.width
    msg.height = info.height
    msg.distortion_model = info.distortion_model
    msg.d = [float(v) for v in info.D]
    msg.k = [float(v) for v in info.K.ravel()]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [float(v) for v in info.P.ravel()]
    return msg


def task_state_msg(state: dict[str, Any]) -> String:
    """``std_msgs/String`` holding the task state as JSON."""
    return String(data=json.dumps(state, sort_keys=True))


def task_state_from_msg(msg: String) -> dict[str, Any] | None:
    """Return the task state of a ``task_state_msg`` (None when it is not a JSON object)."""
    try:
        return dict(json.loads(msg.data))
    except (ValueError, TypeError):
        return None


def plan_to_msg(plan: JointPlan, stamp_ns: int = 0) -> JointTrajectory:
    """Multi-point JointTrajectory (positions + velocities) of an expert plan."""
    msg = JointTrajectory()
    msg.header.stamp = time_msg(stamp_ns)
    msg.joint_names = list(kin.JOINT_NAMES)
    for t, p, v in zip(plan.times, plan.positions, plan.velocities):
        point = JointTrajectoryPoint()
        point.positions = [float(x) for x in p]
        point.velocities = [float(x) for x in v]
        point.time_from_start = duration_msg(float(t))
        msg.points.append(point)
    return msg


def msg_to_command(msg: JointTrajectory) -> TrajectoryCommand:
    """Convert a JointTrajectory message to the ROS-free ``TrajectoryCommand``."""
    stamp = stamp_to_ns(msg.header.stamp)
    return TrajectoryCommand(
        joint_names=list(msg.joint_names),
        time_from_start=[
            p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points
        ],
        positions=[list(p.positions) for p in msg.points],
        velocities=[list(p.velocities) for p in msg.points],
        stamp_ns=stamp,
    )


PARAMETERS: dict[str, Any] = {
    'camera_profile': DEFAULT_PROFILE,
    'seed': 0,
    'start_noise': 0.1,
    'success_threshold': 0.03,
    'tcp_offset': SceneConfig().tcp_offset,
    'image_width': 128,
    'image_height': 96,
    'camera_fovy_deg': 50.0,
    'camera_rate_hz': 15.0,
    'joint_state_rate_hz': 100.0,
    'task_state_rate_hz': 10.0,
    'joint_states_topic': DEFAULT_TOPICS['joint_states'],
    'rgb_topic': DEFAULT_TOPICS['rgb'],
    'depth_topic': DEFAULT_TOPICS['depth'],
    'camera_info_topic': DEFAULT_TOPICS['camera_info'],
    'depth_camera_info_topic': DEFAULT_TOPICS['depth_camera_info'],
    'command_topic': DEFAULT_TOPICS['command'],
    'gripper_joint': GRIPPER_JOINT,
    'angle_wraparound': False,
    'allow_nonzero_velocity_at_trajectory_end': False,
    'interpolate_from_desired_state': False,
    'max_catch_up_s': 0.1,
}


class SimNode(Node):
    """The simulated robot and camera (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('sim_node', **kwargs)
        p = self._declare_parameters()
        self.params = p
        self.profile = camera_profile(str(p['camera_profile']))
        scene = self._scene(p)
        self.sim = Gen3Sim(
            scene,
            start_noise=float(p['start_noise']),
            success_threshold=float(p['success_threshold']),
        )
        self.info = self.sim.camera_info()
        self.depth_info = self.sim.depth_camera_info()
        self.follower = TrajectoryFollower(
            angle_wraparound=bool(p['angle_wraparound']),
            allow_nonzero_velocity_at_trajectory_end=bool(
                p['allow_nonzero_velocity_at_trajectory_end']
            ),
            interpolate_from_desired_state=bool(p['interpolate_from_desired_state']),
        )
        self.joint_order = tuple(
            str(p['gripper_joint']) if n == GRIPPER_JOINT else n for n in JOINT_STATE_ORDER
        )
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        images = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_joints = self.create_publisher(JointState, p['joint_states_topic'], reliable)
        self.pub_rgb = self.create_publisher(Image, p['rgb_topic'], images)
        self.pub_depth = self.create_publisher(Image, p['depth_topic'], images)
        self.pub_info = self.create_publisher(CameraInfo, p['camera_info_topic'], reliable)
        self.pub_depth_info = self.create_publisher(
            CameraInfo, p['depth_camera_info_topic'], reliable
        )
        self.pub_task = self.create_publisher(String, '~/task_state', reliable)
        self.create_subscription(JointTrajectory, p['command_topic'], self._on_command, reliable)
        self.create_service(Trigger, '~/reset', self._on_reset_next)
        self.create_service(Trigger, '~/reset_to_seed', self._on_reset_to_seed)
        self._offset_ns = 0
        self.episode_index = -1
        self._reset(int(p['seed']))
        self.create_timer(1.0 / float(p['joint_state_rate_hz']), self._on_control_tick)
        self.create_timer(1.0 / float(p['camera_rate_hz']), self._on_camera_tick)
        self.create_timer(1.0 / float(p['task_state_rate_hz']), self._on_task_tick)
        self.get_logger().info(
            f'simulated Gen3 ready: seed {self.sim.episode.seed}, camera profile '
            f'{self.profile.name} (colour {scene.image_width}x{scene.image_height}, depth '
            f'{self.depth_info.width}x{self.depth_info.height}) at {p["camera_rate_hz"]} Hz, '
            f'commands on {p["command_topic"]}'
        )

    def _declare_parameters(self) -> dict[str, Any]:
        """Declare every parameter; the camera ones default to the profile's values."""
        self.declare_parameter('camera_profile', DEFAULT_PROFILE)
        profile = camera_profile(str(self.get_parameter('camera_profile').value))
        defaults = {
            **PARAMETERS,
            'image_width': profile.color.width,
            'image_height': profile.color.height,
            'camera_fovy_deg': profile.color.fovy_deg,
            'camera_rate_hz': profile.rate_hz,
        }
        for name, default in defaults.items():
            if name != 'camera_profile':
                self.declare_parameter(name, default)
        p = {name: self.get_parameter(name).value for name in PARAMETERS}
        for key in ('camera_rate_hz', 'joint_state_rate_hz', 'task_state_rate_hz'):
            if not float(p[key]) > 0:
                raise ConfigError(f'parameter {key} must be > 0, got {p[key]!r}')
        return p

    def _scene(self, p: dict[str, Any]) -> SceneConfig:
        """Return the scene of the camera profile (``small``: sized by the image parameters)."""
        base = SceneConfig(tcp_offset=float(p['tcp_offset']))
        profile: CameraProfile = self.profile
        if profile.name == DEFAULT_PROFILE:
            return SceneConfig(
                image_width=int(p['image_width']),
                image_height=int(p['image_height']),
                camera_fovy_deg=float(p['camera_fovy_deg']),
                tcp_offset=base.tcp_offset,
            )
        fixed = {
            'image_width': profile.color.width,
            'image_height': profile.color.height,
            'camera_fovy_deg': profile.color.fovy_deg,
        }
        for name, value in fixed.items():
            if p[name] != value:
                raise ConfigError(
                    f'parameter {name}: {p[name]!r} differs from camera_profile '
                    f'{profile.name!r} ({value!r}); use camera_profile small for another camera'
                )
        return profile.scene(base)

    # -- clock -----------------------------------------------------------------------------------
    def _now_ns(self) -> int:
        return now_ns(self)

    def _physics_ns(self) -> int:
        """Return the physics time on the node clock's base (where the next step samples)."""
        return self._offset_ns + self.sim.time_ns

    def _advance(self) -> None:
        """Step physics until the simulated time reaches the node clock."""
        target = self._now_ns() - self._offset_ns
        dt_ns = round(self.sim.model.opt.timestep * 1e9)
        behind = target - self.sim.time_ns
        max_steps = max(1, round(float(self.params['max_catch_up_s']) * 1e9 / dt_ns))
        steps = min(behind // dt_ns, max_steps)
        if behind // dt_ns > max_steps:  # too far behind (a stall): drop the missing time
            self._offset_ns += (behind // dt_ns - max_steps) * dt_ns
        for _ in range(int(steps)):
            desired = self.follower.sample(self._physics_ns())
            if desired is None:
                self.sim.hold()
            else:
                self.sim.step(desired[0], desired[1])

    # -- episodes --------------------------------------------------------------------------------
    def _reset(self, seed: int) -> dict[str, Any]:
        spec = self.sim.reset(seed)
        self.follower.reset()
        self._offset_ns = self._now_ns() - self.sim.time_ns
        self.episode_index += 1
        self.get_logger().info(f'episode seed {seed}: target {np.round(spec.target, 3).tolist()}')
        return {
            'seed': seed,
            'episode': self.episode_index,
            'target': [float(v) for v in spec.target],
        }

    def _on_reset_next(self, request: Trigger.Request, response: Trigger.Response) -> Any:
        response.message = json.dumps(self._reset(self.sim.episode.seed + 1))
        response.success = True
        return response

    def _on_reset_to_seed(self, request: Trigger.Request, response: Trigger.Response) -> Any:
        seed = int(self.get_parameter('seed').value)
        try:
            response.message = json.dumps(self._reset(seed))
            response.success = True
        except ConfigError as err:
            response.message = str(err)
            response.success = False
        return response

    # -- callbacks -------------------------------------------------------------------------------
    def _on_command(self, msg: JointTrajectory) -> None:
        self._advance()
        # Arrival on the physics clock (whole 2 ms steps, up to one step behind the node clock):
        # the follower is sampled on it, so a start on the node clock would put the next physics
        # steps before the trajectory's start, where a controller holds still (no velocity).
        now = self._physics_ns()
        try:
            self.follower.set_trajectory(
                msg_to_command(msg),
                now,
                self.sim.joint_positions(),
                self.sim.joint_velocities(),
            )
        except TrajectoryRejected as err:
            self.get_logger().warning(f'trajectory on {self.params["command_topic"]} {err}')

    def _on_control_tick(self) -> None:
        self._advance()
        msg = joint_state_msg(
            self._now_ns(),
            self.sim.joint_positions(),
            self.sim.joint_velocities(),
            order=self.joint_order,
            effort=self.sim.joint_efforts(),
        )
        self.pub_joints.publish(msg)

    def _on_camera_tick(self) -> None:
        self._advance()
        rgb, depth = self.sim.render()
        stamp = self._now_ns()
        self.pub_rgb.publish(rgb_msg(stamp, rgb, self.info.frame_id))
        self.pub_depth.publish(depth_msg(stamp, depth, self.depth_info.frame_id))
        self.pub_info.publish(camera_info_msg(stamp, self.info))
        self.pub_depth_info.publish(camera_info_msg(stamp, self.depth_info))

    def task_state(self) -> dict[str, Any]:
        """Return the task state published on ``~/task_state``."""
        sim = self.sim
        return {
            'stamp_ns': self._now_ns(),
            **sim.task_fields(),
            'episode': self.episode_index,
            'episode_time_s': sim.time,
            'trajectories_accepted': self.follower.accepted,
            'trajectories_rejected': self.follower.rejected,
            'last_rejection': self.follower.last_rejection,
        }

    def _on_task_tick(self) -> None:
        self.pub_task.publish(task_state_msg(self.task_state()))

    def destroy_node(self) -> None:
        """Free the renderer, then the node."""
        self.sim.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Entry point of the ``sim_node`` console script; 1 on a bad parameter."""
    return run_node(SimNode, 'sim_node', args)


if __name__ == '__main__':
    sys.exit(main())
