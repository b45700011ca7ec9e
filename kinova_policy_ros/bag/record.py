"""
The ``ros2 bag record`` line that records exactly what ``bag_to_npz`` reads, with its QoS file.

The topics come from the converter's own options (``config/bag_to_npz.yaml``), so recording and
conversion cannot drift apart: colour, depth, camera info, joint states, TF and static TF.

QoS. Camera drivers publish images best effort (sensor data QoS) and a reliable subscription
never receives from a best-effort publisher; a best-effort one receives from both. The recorder
is therefore told to subscribe to the camera topics best effort, and to ``/tf_static`` with
``transient_local`` durability so it gets the transforms latched before recording started.
These are rosbag2's ``--qos-profile-overrides-path`` entries (rosbag2 README, "Overriding QoS
Policies").

``python -m kinova_policy_ros.bag.record [--config FILE] [--output DIR] [--storage mcap]`` writes
the QoS file and prints the command; ``launch/record.launch.py`` runs it.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
import shlex

from kinova_policy_ros.bag.options import ConvertOptions
from kinova_policy_ros.core.errors import ConfigError
from kinova_policy_ros.data.schema import atomic_write

__all__ = ['qos_overrides', 'record_command', 'record_topics', 'write_qos_overrides']

STORAGES = ('mcap', 'sqlite3')

QosProfile = dict[str, str | int]


def record_topics(opts: ConvertOptions) -> list[str]:
    """Return every topic the converter reads, in a fixed order, without duplicates."""
    topics = [
        opts.rgb_topic,
        opts.depth_topic,
        opts.camera_info_topic,
        opts.joint_states_topic,
        opts.tf_topic,
        opts.tf_static_topic,
    ]
    names = ('rgb', 'depth', 'camera_info', 'joint_states', 'tf', 'tf_static')
    for name, topic in zip(names, topics):
        if not topic.startswith('/'):
            raise ConfigError(f'{name}_topic: {topic!r} is not an absolute topic name (/...)')
    return list(dict.fromkeys(topics))


def qos_overrides(opts: ConvertOptions, depth: int = 100) -> dict[str, QosProfile]:
    """rosbag2 QoS overrides: camera streams best effort, static TF latched (transient local)."""
    if depth < 1:
        raise ConfigError(f'qos depth: must be >= 1, got {depth}')
    camera: QosProfile = {
        'history': 'keep_last',
        'depth': depth,
        'reliability': 'best_effort',
        'durability': 'volatile',
    }
    out: dict[str, QosProfile] = {
        t: dict(camera) for t in (opts.rgb_topic, opts.depth_topic, opts.camera_info_topic)
    }
    out[opts.tf_static_topic] = {
        'history': 'keep_all',
        'reliability': 'reliable',
        'durability': 'transient_local',
    }
    return out


def write_qos_overrides(path: Path, opts: ConvertOptions) -> Path:
    """Write :func:`qos_overrides` as YAML to ``path`` (atomically)."""
    import yaml

    text = yaml.safe_dump(qos_overrides(opts), sort_keys=False)
    return atomic_write(path, lambda tmp: tmp.write_text(text), overwrite=True)


def record_command(
    opts: ConvertOptions,
    qos_file: Path,
    output: str | None = None,
    storage: str = 'mcap',
    max_bag_duration_s: int | None = None,
) -> list[str]:
    """Return the ``ros2 bag record`` argument list (topics, storage, QoS file, split)."""
    if storage not in STORAGES:
        raise ConfigError(f'storage: {storage!r} is not one of {list(STORAGES)}')
    cmd = ['ros2', 'bag', 'record', '--storage', storage]
    cmd += ['--qos-profile-overrides-path', str(qos_file)]
    if output:
        cmd += ['--output', output]
    if max_bag_duration_s is not None:
        if max_bag_duration_s < 1:
            raise ConfigError(f'max_bag_duration_s: must be >= 1, got {max_bag_duration_s}')
        cmd += ['--max-bag-duration', str(int(max_bag_duration_s))]
    return [*cmd, *record_topics(opts)]


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser of ``python -m kinova_policy_ros.bag.record``."""
    p = argparse.ArgumentParser(
        prog='python -m kinova_policy_ros.bag.record',
        description='Print the ros2 bag record line for bag_to_npz and write its QoS file.',
    )
    p.add_argument('--config', type=Path, default=None, help='converter config (YAML)')
    p.add_argument('--output', default=None, help='bag directory to record into')
    p.add_argument('--storage', default='mcap', choices=STORAGES)
    p.add_argument('--qos-file', type=Path, default=Path('record_qos_overrides.yaml'))
    p.add_argument('--max-bag-duration', type=int, default=None, help='split every N seconds')
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Write the QoS file and print the ``ros2 bag record`` command."""
    from kinova_policy_ros.bag.cli import load_options

    args = build_parser().parse_args(argv)
    opts = load_options(args.config)
    qos = write_qos_overrides(args.qos_file, opts)
    cmd = record_command(opts, qos, args.output, args.storage, args.max_bag_duration)
    print(shlex.join(cmd))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
