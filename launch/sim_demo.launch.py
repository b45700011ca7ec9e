r"""
Launch the simulated Gen3 + RGB-D camera (``sim_node``) and the policy node in closed loop.

Usage::

    ros2 launch kinova_policy_ros sim_demo.launch.py checkpoint:=/path/to/checkpoint
    ros2 launch kinova_policy_ros sim_demo.launch.py checkpoint:=... seed:=1000 device:=cuda
    ros2 launch kinova_policy_ros sim_demo.launch.py checkpoint:=... camera_profile:=kinova_vision

The simulator publishes ``/joint_states`` and ``/camera/...`` exactly like ros2_kortex and a
camera driver (``camera_profile:=kinova_vision``: the Gen3 vision module's colour 1280x720 and
depth 480x270 at 30 Hz, which override the image parameters of the params file), and follows
``/joint_trajectory_controller/joint_trajectory``; the policy node is
the one of ``policy.launch.py``, enabled on start. Reset to the next seeded episode with
``ros2 service call /sim_node/reset std_srvs/srv/Trigger``; watch
``ros2 topic echo /sim_node/task_state`` for the distance to the target and success.
"""

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.launch_context import LaunchContext
from launch.launch_description import LaunchDescription
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

PACKAGE = 'kinova_policy_ros'
SIM_EXECUTABLE = 'sim_node'
SIM_NODE_NAME = 'sim_node'
POLICY_EXECUTABLE = 'policy_node'
POLICY_NODE_NAME = 'kinova_policy'


def _launch_setup(context: LaunchContext) -> list[Node]:
    sim_overrides: dict[str, ParameterValue] = {
        'seed': ParameterValue(LaunchConfiguration('seed'), value_type=int),
        'use_sim_time': ParameterValue(LaunchConfiguration('use_sim_time'), value_type=bool),
    }
    policy_overrides: dict[str, ParameterValue] = {
        'checkpoint': ParameterValue(LaunchConfiguration('checkpoint'), value_type=str),
        'enabled_on_start': ParameterValue(
            LaunchConfiguration('enabled_on_start'), value_type=bool
        ),
        'use_sim_time': ParameterValue(LaunchConfiguration('use_sim_time'), value_type=bool),
    }
    profile = LaunchConfiguration('camera_profile').perform(context).strip()
    sim_overrides['camera_profile'] = ParameterValue(profile, value_type=str)
    if profile != 'small':
        from kinova_policy_ros.sim.camera import camera_profile

        camera = camera_profile(profile)
        sim_overrides['image_width'] = ParameterValue(camera.color.width, value_type=int)
        sim_overrides['image_height'] = ParameterValue(camera.color.height, value_type=int)
        sim_overrides['camera_fovy_deg'] = ParameterValue(camera.color.fovy_deg, value_type=float)
        sim_overrides['camera_rate_hz'] = ParameterValue(camera.rate_hz, value_type=float)
    if LaunchConfiguration('device').perform(context).strip():
        policy_overrides['device'] = ParameterValue(LaunchConfiguration('device'), value_type=str)
    sim = Node(
        package=PACKAGE,
        executable=SIM_EXECUTABLE,
        name=SIM_NODE_NAME,
        output='screen',
        emulate_tty=True,
        parameters=[LaunchConfiguration('sim_params_file'), sim_overrides],
        additional_env={'MUJOCO_GL': LaunchConfiguration('mujoco_gl').perform(context)},
    )
    policy = Node(
        package=PACKAGE,
        executable=POLICY_EXECUTABLE,
        name=POLICY_NODE_NAME,
        output='screen',
        emulate_tty=True,
        parameters=[LaunchConfiguration('policy_params_file'), policy_overrides],
    )
    return [sim, policy]


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare(PACKAGE)
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                'checkpoint', description='Checkpoint directory of the trained policy (required).'
            ),
            DeclareLaunchArgument(
                'seed', default_value='1000', description='Seed of the first simulated episode.'
            ),
            DeclareLaunchArgument(
                'camera_profile',
                default_value='small',
                choices=['small', 'kinova_vision'],
                description='Simulated camera: small (128x96) or kinova_vision (Gen3 module).',
            ),
            DeclareLaunchArgument(
                'sim_params_file',
                default_value=PathJoinSubstitution([share, 'config', 'sim.yaml']),
                description='Parameter YAML of sim_node (default: the installed sim.yaml).',
            ),
            DeclareLaunchArgument(
                'policy_params_file',
                default_value=PathJoinSubstitution([share, 'config', 'policy.yaml']),
                description='Parameter YAML of the policy node (default: the installed one).',
            ),
            DeclareLaunchArgument(
                'device',
                default_value='',
                description='auto, cpu, cuda or cuda:N (empty: the params file value).',
            ),
            DeclareLaunchArgument(
                'enabled_on_start',
                default_value='true',
                choices=['true', 'false', 'True', 'False'],
                description='true: the policy commands at once; false: wait for ~/enable.',
            ),
            DeclareLaunchArgument(
                'use_sim_time',
                default_value='false',
                choices=['true', 'false', 'True', 'False'],
                description='Use /clock (the simulator follows the node clock; keep false).',
            ),
            DeclareLaunchArgument(
                'mujoco_gl',
                default_value='egl',
                choices=['egl', 'osmesa', 'glfw'],
                description='MuJoCo rendering back end (egl: headless GPU or Mesa).',
            ),
            OpaqueFunction(function=_launch_setup),
        ]
    )
