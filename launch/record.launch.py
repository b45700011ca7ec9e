r"""
Record a demonstration bag with exactly the topics and QoS that ``bag_to_npz`` needs.

Usage::

    ros2 launch kinova_policy_ros record.launch.py output:=demo_001
    ros2 launch kinova_policy_ros record.launch.py output:=demo_002 storage:=sqlite3 \\
        config:=/path/to/my_bag_to_npz.yaml

The topic list comes from the converter config (default: the installed
``config/bag_to_npz.yaml``) through ``kinova_policy_ros.bag.record``, which also writes the
rosbag2 QoS override file (camera streams best effort, ``/tf_static`` transient local) next to
the bag. ``python -m kinova_policy_ros.bag.record`` prints the same ``ros2 bag record`` line.
"""

from pathlib import Path

from kinova_policy_ros.bag.cli import load_options
from kinova_policy_ros.bag.record import record_command, STORAGES, write_qos_overrides
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.launch_context import LaunchContext
from launch.launch_description import LaunchDescription
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

PACKAGE = 'kinova_policy_ros'


def _record(context: LaunchContext) -> list[ExecuteProcess]:
    output = LaunchConfiguration('output').perform(context).strip()
    if not output:
        raise RuntimeError('record.launch.py: output:=<bag directory> is required')
    opts = load_options(LaunchConfiguration('config').perform(context))
    qos = write_qos_overrides(Path(f'{output.rstrip("/")}_qos_overrides.yaml'), opts)
    duration = LaunchConfiguration('max_bag_duration').perform(context).strip()
    cmd = record_command(
        opts,
        qos,
        output,
        LaunchConfiguration('storage').perform(context),
        int(duration) if duration else None,
    )
    return [ExecuteProcess(cmd=cmd, output='screen')]


def generate_launch_description() -> LaunchDescription:
    default_config = PathJoinSubstitution(
        [FindPackageShare(PACKAGE), 'config', 'bag_to_npz.yaml']
    )
    return LaunchDescription(
        [
            DeclareLaunchArgument('output', description='Bag directory to record into.'),
            DeclareLaunchArgument(
                'config',
                default_value=default_config,
                description='Converter config whose topics are recorded.',
            ),
            DeclareLaunchArgument(
                'storage',
                default_value='mcap',
                choices=list(STORAGES),
                description='rosbag2 storage plugin.',
            ),
            DeclareLaunchArgument(
                'max_bag_duration',
                default_value='',
                description='Split the bag every N seconds (empty: one file).',
            ),
            OpaqueFunction(function=_record),
        ]
    )
