"""Tests of kinova_policy_ros.bag.reader: tolerant CDR, bag paths, topics and streaming."""

from pathlib import Path

from kinova_policy_ros.bag.reader import BagSource, deserialize, resolve_bag_path
from kinova_policy_ros.core.errors import BagError
from kinova_policy_ros.testing import bag_synthetic as syn
import numpy as np
import pytest
from rosbags.typesys import get_typestore, Stores

TS = get_typestore(Stores.ROS2_HUMBLE)


def _joint_state(names: list[str], pos: list[float]) -> bytes:
    msg = TS.types['sensor_msgs/msg/JointState'](
        header=syn._header(5, ''),
        name=names,
        position=np.array(pos),
        velocity=np.zeros(0),
        effort=np.zeros(0),
    )
    return bytes(TS.serialize_cdr(msg, 'sensor_msgs/msg/JointState'))


def test_deserialize_accepts_trailing_padding_and_rejects_garbage() -> None:
    raw = _joint_state(['a', 'b'], [1.0, 2.0])
    padded = raw + bytes(8)  # what rclpy / Fast DDS stores
    with pytest.raises(Exception, match='size mismatch'):
        TS.deserialize_cdr(padded, 'sensor_msgs/msg/JointState')
    msg = deserialize(TS, padded, 'sensor_msgs/msg/JointState')
    assert msg.name == ['a', 'b'] and msg.position.tolist() == [1.0, 2.0]
    assert msg.header.stamp.nanosec == 5
    with pytest.raises(ValueError, match='JointState: CDR message size mismatch'):
        deserialize(TS, raw + bytes(200), 'sensor_msgs/msg/JointState')
    with pytest.raises(ValueError, match='JointState: cannot deserialize 30 bytes'):
        deserialize(TS, raw[:30], 'sensor_msgs/msg/JointState')
    with pytest.raises(ValueError, match='invalid or unsupported CDR encapsulation'):
        deserialize(TS, b'\x07\x07' + raw[2:], 'sensor_msgs/msg/JointState')


def test_rclpy_bytes_deserialize() -> None:
    ser = pytest.importorskip('rclpy.serialization')
    msgs = pytest.importorskip('sensor_msgs.msg')
    m = msgs.JointState(name=['joint_1', 'finger_joint'], position=[0.5, 0.1], velocity=[])
    msg = deserialize(TS, bytes(ser.serialize_message(m)), 'sensor_msgs/msg/JointState')
    assert msg.name == ['joint_1', 'finger_joint'] and msg.position.tolist() == [0.5, 0.1]


def test_resolve_and_open(tmp_path: Path) -> None:
    bag = tmp_path / 'rec'
    syn.write_bag(bag, syn.SynthSpec(n_frames=3, storage='mcap'))
    storage = next(bag.glob('*.mcap'))
    assert resolve_bag_path(storage) == bag  # a file in a bag directory opens the directory
    with pytest.raises(BagError, match='does not exist'):
        resolve_bag_path(tmp_path / 'nope')
    (tmp_path / 'x.txt').write_text('')
    with pytest.raises(BagError, match=r'x.txt: not a rosbag2 file'):
        resolve_bag_path(tmp_path / 'x.txt')
    with BagSource(bag) as src:
        topics = src.topics()
        assert topics['/camera/color/image_raw'].count == 3
        assert src.storage == 'mcap'
        with pytest.raises(BagError, match=r"joint topic '/js' is not in the bag; the bag has: "):
            src.require_topic('/js', 'joint', ('sensor_msgs/msg/JointState',))
        n = sum(1 for _ in src.messages(['/joint_states']))
        assert n == topics['/joint_states'].count


def test_require_topics_names_every_problem(tmp_path: Path) -> None:
    from kinova_policy_ros.bag.reader import TopicRequirement

    image = 'sensor_msgs/msg/Image'
    spec = syn.SynthSpec(
        n_frames=3,
        rgb_topic='/x',
        depth_topic='/y',
        extra_topics={'/camera/depth/image_raw': (image, [])},
    )
    syn.write_bag(tmp_path / 'b', spec)
    needs = [
        TopicRequirement('RGB', '/camera/color/image_raw', (image,)),
        TopicRequirement('depth', '/camera/depth/image_raw', (image,)),
        TopicRequirement('joint states', '/joint_states', ('sensor_msgs/msg/JointState',)),
        TopicRequirement('camera info', '/tf', ('sensor_msgs/msg/CameraInfo',)),
    ]
    with BagSource(tmp_path / 'b') as src:
        with pytest.raises(BagError) as err:
            src.require_topics(needs)
        assert [s.name for s in src.require_topics(needs[2:3])] == ['/joint_states']
    msg = str(err.value)
    assert msg.startswith(f'{tmp_path / "b"}: 3 topics are missing or unusable: ')
    assert "RGB topic '/camera/color/image_raw' is not in the bag; " in msg
    assert "depth topic '/camera/depth/image_raw' is empty (0 messages); " in msg
    assert "camera info topic '/tf' has type tf2_msgs/msg/TFMessage, expected " in msg
    assert msg.endswith('/x (sensor_msgs/msg/Image), /y (sensor_msgs/msg/Image)')
    assert 'joint states' not in msg


def test_rosbag2_reader_for_dot_bag_paths(tmp_path: Path) -> None:
    from kinova_policy_ros.bag.reader import _Rosbag2AnyReader
    from rosbags.highlevel import AnyReader

    syn.write_bag(tmp_path / 'r.bag', syn.SynthSpec(n_frames=3))
    plain = AnyReader([tmp_path / 'r.bag'])
    assert not plain.is2  # rosbags takes it for a ROS 1 bag by its name
    reader = _Rosbag2AnyReader([tmp_path / 'r.bag'], default_typestore=TS)
    assert reader.is2 and set(vars(reader)) == set(vars(plain))
    with reader:
        assert sum(1 for _ in reader.messages()) > 3
    with BagSource(tmp_path / 'r.bag') as src:
        assert src.storage == 'sqlite3' and src.layout.open_path == tmp_path / 'r.bag'
