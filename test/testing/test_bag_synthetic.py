"""Tests of kinova_policy_ros.testing.bag_synthetic: the synthetic bags the converter tests use."""

from pathlib import Path

from kinova_policy_ros.bag.reader import BagSource
from kinova_policy_ros.core import kinematics as kin
from kinova_policy_ros.testing import bag_synthetic as syn
import numpy as np
import pytest


def test_truth_stamps_follow_the_spec(tmp_path: Path) -> None:
    spec = syn.SynthSpec(n_frames=12, rate_hz=10.0, depth_drop=(2, 5), rgb_gap=(0.3, 0.5),
                         joint_gap=(0.2, 0.4), depth_offset_s=0.003)
    truth = syn.write_bag(tmp_path / 'b', spec)
    t = (truth.rgb_stamps - spec.start_ns) * 1e-9
    np.testing.assert_allclose(t, [0.0, 0.1, 0.2, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1])
    assert truth.depth_ids.tolist() == [0, 1, 3, 4, 6, 7, 8, 9]  # indices into the kept frames
    np.testing.assert_array_equal(
        truth.depth_stamps, truth.rgb_stamps[truth.depth_ids] + 3_000_000
    )
    tj = (truth.joint_stamps - spec.start_ns - 1_300_000) * 1e-9
    assert not np.any((tj >= 0.2 - 1e-9) & (tj < 0.4 - 1e-9))  # the joint gap
    assert tj[0] == pytest.approx(-0.05) and tj[-1] >= 1.1 + 0.04
    assert np.allclose(np.diff(tj)[tj[:-1] > 0.4], 0.01)  # 100 Hz outside the gap
    assert sorted(truth.joint_names) == sorted([*kin.JOINT_NAMES, *syn.GRIPPER_JOINTS])
    assert truth.joint_names[:2] != list(kin.JOINT_NAMES[:2])  # the order really is shuffled


def test_written_bag_has_the_topics_and_counts(tmp_path: Path) -> None:
    spec = syn.SynthSpec(n_frames=5, storage='mcap', rgb='jpeg',
                         rgb_topic='/camera/color/image_raw/compressed',
                         extra_topics={'/empty': ('std_msgs/msg/String', [])})
    truth = syn.write_bag(tmp_path / 'b', spec)
    with BagSource(tmp_path / 'b') as src:
        topics = src.topics()
        assert src.storage == 'mcap'
        assert topics[spec.rgb_topic].msgtype == 'sensor_msgs/msg/CompressedImage'
        assert topics[spec.rgb_topic].count == 5
        assert topics[spec.depth_topic].count == 5
        assert topics['/joint_states'].count == len(truth.joint_stamps)
        assert topics['/camera/color/camera_info'].count == 1
        assert topics['/tf_static'].count == 1 and topics['/tf'].count > 5
        assert topics['/empty'].count == 0  # a connection without messages
        bag_times = [ns for _, ns, _ in src.messages(list(topics))]
    assert bag_times == sorted(bag_times)  # written in time order


def test_without_tf_or_camera_info(tmp_path: Path) -> None:
    syn.write_bag(tmp_path / 'b', syn.SynthSpec(n_frames=3, tf='none', camera_info=False))
    with BagSource(tmp_path / 'b') as src:
        assert not {'/tf', '/tf_static', '/camera/color/camera_info'} & set(src.topics())


def test_frames_are_deterministic_closed_forms() -> None:
    a = syn.rgb_frame(3, 6, 8)
    assert a.dtype == np.uint8 and a.shape == (6, 8, 3)
    np.testing.assert_array_equal(a, syn.rgb_frame(3, 6, 8))
    assert not np.array_equal(a, syn.rgb_frame(4, 6, 8))
    noisy = syn.rgb_frame(3, 6, 8, noise=5)
    assert 0 < np.abs(noisy.astype(int) - a).max() <= 5
    d = syn.depth_frame(2, 4, 5)
    assert d.dtype == np.float32 and d[0, 0] == 0.0
    np.testing.assert_allclose(d[1], (520.0 + np.arange(5)) / 1000.0)


def test_joint_closed_forms() -> None:
    t = np.linspace(0.0, 1.0, 201)
    q, dq = syn.joint_positions(t), syn.joint_velocities(t)
    assert q.shape == dq.shape == (201, 7)
    crossing = t[np.argmax(q[:, 2] > np.pi)]
    assert crossing == pytest.approx(0.3, abs=0.01)  # joint_3 crosses +pi at 0.3 s
    np.testing.assert_allclose(np.gradient(q, t, axis=0)[1:-1], dq[1:-1], atol=2e-3)
    xyz, quat = syn.tf_pose(0.4)
    assert xyz == pytest.approx((0.34, -0.18, 0.4))
    assert np.linalg.norm(quat) == pytest.approx(1.0)
    assert 2 * np.arctan2(quat[2], quat[3]) == pytest.approx(0.4)  # 0.2 + 0.5 t about z


def test_split_recording_has_every_message_once(tmp_path: Path) -> None:
    from rosbags.highlevel import AnyReader
    import yaml

    syn.write_bag(tmp_path / 'one', syn.SynthSpec(n_frames=7, storage='mcap'))
    syn.write_bag(tmp_path / 'split', syn.SynthSpec(n_frames=7, storage='mcap', splits=3))
    names = sorted(p.name for p in (tmp_path / 'split').iterdir())
    assert names == ['metadata.yaml', 'split_0.mcap', 'split_1.mcap', 'split_2.mcap']
    meta = yaml.safe_load((tmp_path / 'split' / 'metadata.yaml').read_text())
    info = meta['rosbag2_bagfile_information']
    assert info['relative_file_paths'] == names[1:]
    read = {}
    for bag in ('one', 'split'):
        with AnyReader([tmp_path / bag], default_typestore=syn.TS) as reader:
            read[bag] = [(c.topic, t, bytes(raw)) for c, t, raw in reader.messages()]
    assert read['split'] == read['one'] and info['message_count'] == len(read['one'])
    per_file = [f['message_count'] for f in info['files']]
    assert sum(per_file) == len(read['one']) and max(per_file) - min(per_file) <= 1
