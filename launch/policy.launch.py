r"""
Launch the ``kinova_policy`` node (receding-horizon JointTrajectory control of a Kinova Gen3).

Usage::

    ros2 launch kinova_policy_ros policy.launch.py checkpoint:=/path/to/checkpoint
    ros2 launch kinova_policy_ros policy.launch.py checkpoint:=... device:=cuda \\
        rgb_topic:=/camera/camera/color/image_raw \\
        depth_topic:=/camera/camera/aligned_depth_to_color/image_raw
    # Kinova Gen3 (kinova_vision): watch ~/predicted_ee_path in RViz first, nothing is commanded
    ros2 launch kinova_policy_ros policy.launch.py checkpoint:=... dry_run:=true \\
        rgb_topic:=/camera/color/image_raw depth_topic:=/camera/depth/image_raw

``params_file`` (default: the installed ``config/policy.yaml``) gives every parameter; the
launch arguments below override it only when they are set (an empty topic or device argument
keeps the value of the params file).
"""

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.launch_context import LaunchContext
from launch.launch_description import LaunchDescription
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

PACKAGE = 'kinova_policy_ros'
EXECUTABLE = 'policy_node'
NODE_NAME = 'kinova_policy'

# String parameters that a launch argument overrides when it is not empty.
STRING_OVERRIDES = (
    'device',
    'rgb_topic',
    'depth_topic',
    'joint_states_topic',
    'command_topic',
    'base_frame',
)
# Boolean parameters that a launch argument overrides when it is not empty.
BOOL_OVERRIDES = (
    'enabled_on_start',
    'dry_run',
)


def _launch_setup(context: LaunchContext) -> list[Node]:
    overrides: dict[str, ParameterValue] = {
        'checkpoint': ParameterValue(LaunchConfiguration('checkpoint'), value_type=str),
        'use_sim_time': ParameterValue(LaunchConfiguration('use_sim_time'), value_type=bool),
    }
    for name in STRING_OVERRIDES:
        if LaunchConfiguration(name).perform(context).strip():
            overrides[name] = ParameterValue(LaunchConfiguration(name), value_type=str)
    for name in BOOL_OVERRIDES:
        if LaunchConfiguration(name).perform(context).strip():
            overrides[name] = ParameterValue(LaunchConfiguration(name), value_type=bool)
    node = Node(
        package=PACKAGE,
        executable=EXECUTABLE,
        name=NODE_NAME,
        output='screen',
        emulate_tty=True,
        parameters=[LaunchConfiguration('params_file'), overrides],
    )
    return [node]


def generate_launch_description() -> LaunchDescription:
    default_params = PathJoinSubstitution([FindPackageShare(PACKAGE), 'config', 'policy.yaml'])
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                'checkpoint', description='Checkpoint directory of the trained policy (required).'
            ),
            DeclareLaunchArgument(
                'params_file',
                default_value=default_params,
                description='Parameter YAML of the node (default: the installed policy.yaml).',
            ),
            DeclareLaunchArgument(
                'device',
                default_value='',
                description='auto, cpu, cuda or cuda:N (empty: the params file value).',
            ),
            DeclareLaunchArgument(
                'use_sim_time',
                default_value='false',
                choices=['true', 'false', 'True', 'False'],
                description='Use /clock (simulation time).',
            ),
            DeclareLaunchArgument(
                'rgb_topic',
                default_value='',
                description='RGB image topic (empty: the params file value).',
            ),
            DeclareLaunchArgument(
                'depth_topic',
                default_value='',
                description='Depth image topic, 16UC1 mm or 32FC1 m (empty: the params file).',
            ),
            DeclareLaunchArgument(
                'joint_states_topic',
                default_value='',
                description='sensor_msgs/JointState topic (empty: the params file value).',
            ),
            DeclareLaunchArgument(
                'command_topic',
                default_value='',
                description='JointTrajectory command topic (empty: the params file value).',
            ),
            DeclareLaunchArgument(
                'enabled_on_start',
                default_value='',
                description='true: command at once, false: wait for ~/enable (empty: params file)',
            ),
            DeclareLaunchArgument(
                'dry_run',
                default_value='',
                description='true: plan and publish ~/predicted_ee_path, never a command '
                '(empty: params file)',
            ),
            DeclareLaunchArgument(
                'base_frame',
                default_value='',
                description='frame_id of ~/predicted_ee_path (empty: the params file value).',
            ),
            OpaqueFunction(function=_launch_setup),
        ]
    )
