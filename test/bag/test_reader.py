"""Tests of kinova_policy_ros.bag.reader (tolerant CDR) and bag_sync (joints, TF, segments)."""

import math
from pathlib import Path

from kinova_policy_ros.bag.reader import BagSource, deserialize, resolve_bag_path
from kinova_policy_ros.bag.sync import (
    JointTrack,
    quat_to_matrix,
    rebase_continuous,
    slerp,
    split_segments,
    TfBuffer,
)
from kinova_policy_ros.core.errors import BagError
from kinova_policy_ros.testing import bag_synthetic as syn
import numpy as np
import pytest
from rosbags.typesys import get_typestore, Stores

TS = get_typestore(Stores.ROS2_HUMBLE)
NAMES = tuple(f'joint_{i}' for i in range(1, 8))


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


def test_joint_track_interpolates_by_name_and_unwraps() -> None:
    track = JointTrack(NAMES)
    names = ['finger_joint', *reversed(NAMES)]
    for k, (t, q3) in enumerate([(0, 3.0), (10, -3.0), (20, -2.9)]):
        pos = [0.7] + [float(k + i) for i in range(7)]
        pos[names.index('joint_3')] = q3
        track.add(t * 1_000_000, names, pos, [])
    track.add(0, ['finger_joint'], [0.1], [])  # gripper-only message: skipped, no time check
    assert track.skipped_without_arm_joints == 1
    s = track.sample(np.array([5_000_000, 10_000_000, 25_000_000, 200_000_000]), 10_000_000)
    # joint_1 is reversed position 6: values k + 6 at k = 0, 1, 2 -> 6.5 at 5 ms
    assert s.q[0, 0] == pytest.approx(6.5)
    # joint_3 goes 3.0 -> -3.0 (+0.283 through pi): the midpoint is near pi, not 0
    assert s.q[0, 2] == pytest.approx(3.0 + (2 * math.pi - 6.0) / 2)
    assert s.q[2, 0] == pytest.approx(8.0)  # after the last message, within the gap: held
    assert s.valid.tolist() == [True, True, True, False]
    assert s.reason[3] == 'no_joint_state'
    assert s.velocity_source == 'finite_difference'
    assert s.dq[1, 0] == pytest.approx(100.0)  # 1 rad per 10 ms


def test_joint_track_errors() -> None:
    track = JointTrack(NAMES, where='bag: /joint_states')
    with pytest.raises(BagError, match=r"bag: /joint_states: joint 'joint_7' missing"):
        track.add(0, list(NAMES[:6]), [0.0] * 6, [])
    track.add(10, list(NAMES), [0.0] * 7, [])
    with pytest.raises(BagError, match=r'stamps are not monotonic \(10 ns then 5 ns'):
        track.add(5, list(NAMES), [0.0] * 7, [])
    with pytest.raises(BagError, match='7 names but 3 positions'):
        track.add(20, list(NAMES), [0.0] * 3, [])


def test_joint_gap_is_not_bridged() -> None:
    track = JointTrack(NAMES)
    for t in (0, 10, 300, 310):
        track.add(t * 1_000_000, list(NAMES), [t / 1000.0] * 7, [1.0] * 7)
    s = track.sample(np.array([5, 150, 305]) * 1_000_000, 100_000_000)
    assert s.valid.tolist() == [True, False, True]
    assert s.reason.tolist() == ['', 'joint_gap', '']
    assert s.velocity_source == 'message' and np.all(s.dq[s.valid] == 1.0)


def test_rebase_and_segments() -> None:
    q = np.zeros((3, 7))
    q[:, 2] = [3.5, 3.6, 3.7]
    q[:, 1] = [3.5, 3.6, 3.7]  # not continuous: untouched
    out = rebase_continuous(q, np.array([True, False, True, False, True, False, True]))
    np.testing.assert_allclose(out[:, 2], np.array([3.5, 3.6, 3.7]) - 2 * math.pi)
    np.testing.assert_allclose(out[:, 1], q[:, 1])
    stamps = np.array([0, 10, 20, 100, 110, 500])
    assert split_segments(stamps, 50) == [slice(0, 3), slice(3, 5), slice(5, 6)]
    assert split_segments(stamps, None) == [slice(0, 6)]
    assert split_segments(np.zeros(0), 5) == []


def test_slerp_and_quaternions() -> None:
    def about_z(a: float) -> np.ndarray:
        return np.array([[0.0, 0.0, math.sin(a / 2), math.cos(a / 2)]])

    mid = slerp(about_z(0.2), about_z(1.0), np.array([0.25]))
    np.testing.assert_allclose(mid, about_z(0.4), atol=1e-12)
    np.testing.assert_allclose(slerp(about_z(0.3), -about_z(0.3), np.array([0.5])), about_z(0.3))
    r = quat_to_matrix(about_z(math.pi / 2))[0]
    np.testing.assert_allclose(r @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-12)


def test_tf_buffer_chain_and_lookup() -> None:
    tf = TfBuffer()
    s = math.sin(math.pi / 4)
    tf.add('/base_link', 'a', 0, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0), static=False)
    tf.add('base_link', 'a', 100, (1.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0), static=False)
    tf.add('a', 'ee', 0, (0.0, 1.0, 0.0), (0.0, 0.0, s, s), static=True)
    assert tf.chain('base_link', 'ee') == [('base_link', 'a'), ('a', 'ee')]
    assert tf.chain('base_link', 'other') is None
    poses, ok = tf.lookup('base_link', 'ee', np.array([50, 150, 1000]), 100)
    assert ok.tolist() == [True, True, False]
    np.testing.assert_allclose(poses[0, :3, 3], [0.5, 1.0, 0.0])
    np.testing.assert_allclose(poses[0, :3, :3] @ [1.0, 0, 0], [0.0, 1.0, 0.0], atol=1e-12)
    _, ok = tf.lookup('base_link', 'nowhere', np.array([0]), 100)
    assert not ok.any()
