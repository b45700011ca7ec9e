"""Tests of kinova_policy_ros.bag.mcap_scan: profiles and channels of MCAP files."""

from pathlib import Path

from kinova_policy_ros.bag.mcap_scan import check_mcap, McapChannel, scan
from kinova_policy_ros.core.errors import BagError
from kinova_policy_ros.testing import bag_synthetic as syn
import pytest


def test_rosbag2_mcap_is_ros2(tmp_path: Path) -> None:
    syn.write_bag(tmp_path / 'b', syn.SynthSpec(n_frames=3, storage='mcap'))
    path = tmp_path / 'b' / 'b.mcap'
    profile, channels = scan(path)
    assert profile == 'ros2'
    topics = {c.topic: c for c in channels}
    assert topics['/joint_states'] == McapChannel(
        '/joint_states', 'cdr', 'sensor_msgs/msg/JointState', 'ros2msg'
    )
    assert all(c.is_ros2 for c in channels) and len(topics) == 6
    check_mcap(path)  # no error


def test_foreign_channels_and_profiles(tmp_path: Path) -> None:
    path = syn.write_mcap(
        tmp_path / 'x.mcap',
        'ros2',
        [
            ('/ok', 'std_msgs/msg/String', 'ros2msg', b'string data', 'cdr', [b'\x00\x01']),
            ('/pb', 'pkg.Msg', 'protobuf', b'\x0a', 'protobuf', [b'\x01', b'\x02']),
        ],
    )
    profile, channels = scan(path)
    assert profile == 'ros2'
    assert [(c.topic, c.is_ros2) for c in channels] == [('/ok', True), ('/pb', False)]
    with pytest.raises(BagError, match=r'x\.mcap: .*channels: /pb \(protobuf messages, protobuf '
                       r"schema 'pkg\.Msg'\)\. bag_to_npz"):
        check_mcap(path)
    other = syn.write_mcap(tmp_path / 'y.mcap', 'ros1', [])
    with pytest.raises(BagError, match=r"y\.mcap: an MCAP file with profile 'ros1'.*no channels"):
        check_mcap(other)


def test_without_summary_the_data_section_is_scanned(tmp_path: Path) -> None:
    path = syn.write_mcap(
        tmp_path / 'z.mcap', '', [('/a', 'A', 'jsonschema', b'{}', 'json', [b'{}', b'{}'])]
    )
    data = bytearray(path.read_bytes())
    data[-37 + 9:-37 + 17] = bytes(8)  # footer: summary_start = 0 (no summary section)
    path.write_bytes(bytes(data))
    assert scan(path) == ('', [McapChannel('/a', 'json', 'A', 'jsonschema')])
    (tmp_path / 'n.mcap').write_bytes(b'SQLite format 3\x00')
    with pytest.raises(BagError, match=r'n\.mcap: not an MCAP file'):
        scan(tmp_path / 'n.mcap')
