"""Offline demonstration bags: readable by rosbags and by the project's converter."""

import json
from operator import itemgetter
from pathlib import Path

from kinova_policy_ros.core import kinematics as kin
from kinova_policy_ros.core.errors import BagError, ConfigError
from kinova_policy_ros.sim.env import Gen3Sim, TCP_OFFSET_2F85, tcp_point
from kinova_policy_ros.sim.ros import sim_node
from kinova_policy_ros.sim.ros.record_demos import main as record_main
from kinova_policy_ros.sim.ros.recorder import BagSink, default_topics
import numpy as np
import pytest
from rosbags.highlevel import AnyReader
from rosbags.typesys import get_typestore, Stores


@pytest.fixture(scope='module')
def bags(tmp_path_factory):
    out = tmp_path_factory.mktemp('demos')
    assert (
        record_main(['--out', str(out / 'mcap'), '--episodes', '2', '--seed', '4', '--quiet']) == 0
    )
    assert (
        record_main(
            [
                '--out',
                str(out / 'sqlite'),
                '--episodes',
                '1',
                '--seed',
                '9',
                '--storage',
                'sqlite3',
            ]
        )
        == 0
    )
    return out


def test_layout_and_manifest(bags):
    assert sorted(p.name for p in (bags / 'mcap').iterdir()) == [
        'episode_000004',
        'episode_000005',
        'episodes.json',
    ]
    assert (bags / 'mcap' / 'episode_000004' / 'episode_000004.mcap').exists()
    assert (bags / 'sqlite' / 'episode_000009' / 'episode_000009.db3').exists()
    manifest = json.loads((bags / 'mcap' / 'episodes.json').read_text())['episodes']
    assert [e['seed'] for e in manifest] == [4, 5]
    assert all(e['success'] and e['final_distance'] < 0.01 for e in manifest)
    assert not list(bags.glob('**/*.partial'))


@pytest.mark.parametrize('bag', ['mcap/episode_000004', 'sqlite/episode_000009'])
def test_bags_hold_the_driver_topics_with_definitions(bags, bag):
    store = get_typestore(Stores.ROS2_HUMBLE)
    with AnyReader([bags / bag], default_typestore=store) as reader:
        topics = {c.topic: c.msgtype for c in reader.connections}
        assert topics == default_topics()
        assert all(c.msgdef.data for c in reader.connections)  # type definitions are stored
        counts = dict.fromkeys(topics, 0)
        js_names = None
        for conn, _, raw in reader.messages():
            counts[conn.topic] += 1
            if conn.topic == '/camera/color/camera_info' and counts[conn.topic] == 1:
                info = reader.deserialize(raw, conn.msgtype)
                assert (info.width, info.height) == (128, 96)
                assert info.k[0] == pytest.approx(info.k[4]) and info.k[2] == 63.5
            if conn.topic == '/camera/depth/image_raw' and counts[conn.topic] == 1:
                img = reader.deserialize(raw, conn.msgtype)
                assert img.encoding == '16UC1' and img.step == 256
            if conn.topic == '/joint_states' and js_names is None:
                # positions, velocities and efforts, as ros2_kortex publishes them
                js = store.deserialize_cdr(bytes(raw), conn.msgtype)
                assert len(js.position) == len(js.velocity) == len(js.effort) == 8
                assert list(js.name) == list(sim_node.JOINT_STATE_ORDER)
                js_names = list(js.name)
            if conn.topic == '/joint_trajectory_controller/joint_trajectory':
                # rclpy serializes with trailing padding: the strict reader refuses it ...
                with pytest.raises(Exception, match='size mismatch'):
                    store.deserialize_cdr(bytes(raw), conn.msgtype)
        duration = reader.duration * 1e-9
    assert counts['/joint_states'] == pytest.approx(100 * duration, abs=3)
    assert counts['/camera/color/image_raw'] == pytest.approx(15 * duration, abs=2)
    assert counts['/camera/depth/image_raw'] == counts['/camera/color/image_raw']
    assert counts['/joint_trajectory_controller/joint_trajectory'] == 1
    assert js_names is not None and js_names != sorted(js_names)


def test_converter_reads_the_padded_bags(bags, tmp_path):
    bag_to_npz = pytest.importorskip('kinova_policy_ros.bag.cli')
    from kinova_policy_ros.data.schema import load_episode

    bag_dirs = [bags / 'mcap' / 'episode_000004', bags / 'sqlite' / 'episode_000009']
    assert bag_to_npz.main([*map(str, bag_dirs), '--out', str(tmp_path), '--no-progress']) == 0
    for name, seed in (('episode_000004', 4), ('episode_000009', 9)):
        ep = load_episode(tmp_path / f'{name}.npz')
        n = len(ep.stamp_ns)
        assert n > 50 and ep.rgb.shape == (n, 96, 128, 3) and ep.depth.shape == (n, 96, 128)
        assert list(ep.joint_names) == list(kin.JOINT_NAMES)
        # joint_3 starts near π: unwrapped in the episode, so no 2π jump
        assert np.abs(np.diff(ep.q, axis=0)).max() < 0.2
        sim = Gen3Sim(render=False)
        spec = sim.reset(seed)
        sim.close()
        np.testing.assert_allclose(kin.wrap_to_pi(ep.q[0] - spec.q0), 0.0, atol=1e-3)
        # the TCP on the target, tool down: the flange straight above it by the TCP offset
        above = spec.target + np.array([0.0, 0.0, TCP_OFFSET_2F85])
        assert np.linalg.norm(ep.ee_xyz[-1] - above) < 0.01
        valid = ep.depth[ep.depth > 0]
        assert valid.size and 0.3 < np.median(valid) < 4.0


def test_bag_sink_refuses_existing_paths_and_bad_storage(tmp_path):
    with pytest.raises(ConfigError, match='storage'):
        BagSink(tmp_path / 'x', {'/a': 'std_msgs/msg/String'}, storage='rosbag1')
    (tmp_path / 'exists').mkdir()
    with pytest.raises(BagError, match='already exists'):
        BagSink(tmp_path / 'exists', {'/a': 'std_msgs/msg/String'})


def test_same_seed_gives_the_same_messages_in_both_storages(bags, tmp_path):
    from kinova_policy_ros.sim.ros.record_demos import record_offline, RecordOptions
    from rclpy.serialization import deserialize_message

    record_offline(tmp_path, [4], RecordOptions(storage='sqlite3'), verbose=False)
    store = get_typestore(Stores.ROS2_HUMBLE)
    types = {sim_node.DEFAULT_TOPICS[k]: t for k, t in sim_node.TOPIC_TYPES.items()}

    def read(path: Path) -> list[tuple[str, int, object]]:
        # alignment padding of rclpy's CDR is not initialized: compare the decoded messages
        with AnyReader([path], default_typestore=store) as reader:
            return [
                (c.topic, t, deserialize_message(bytes(raw), types[c.topic]))
                for c, t, raw in reader.messages()
            ]

    first = read(bags / 'mcap' / 'episode_000004')
    second = read(tmp_path / 'episode_000004')
    assert len(first) == len(second) > 500
    assert sorted(first, key=itemgetter(0, 1)) == sorted(second, key=itemgetter(0, 1))


def test_varied_demonstrations_pause_or_start_near_the_target(tmp_path):
    from kinova_policy_ros.sim.expert import DemoVariation
    from kinova_policy_ros.sim.ros.record_demos import record_offline, RecordOptions
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory

    # seed 2000 draws a recovery start, 2003 a pause (fractions 0.5)
    var = DemoVariation(recovery_fraction=0.5, pause_fraction=0.5)
    entries = record_offline(
        tmp_path, [2000, 2003], RecordOptions(variation=var), verbose=False
    )
    by_seed = {e['seed']: e for e in entries}
    assert by_seed[2000]['recovery_start'] and by_seed[2000]['pause_s'] == 0.0
    assert not by_seed[2003]['recovery_start'] and by_seed[2003]['pause_s'] > 0.3
    assert all(e['success'] for e in entries)
    store = get_typestore(Stores.ROS2_HUMBLE)
    command_topic = sim_node.DEFAULT_TOPICS['command']
    for seed, n_commands in ((2000, 1), (2003, 3)):  # the reach; or reach, stop, re-plan
        bag = tmp_path / f'episode_{seed:06d}'
        with AnyReader([bag], default_typestore=store) as reader:
            conns = {c.topic: c for c in reader.connections}
            q, commands = [], []
            for conn, _, raw in reader.messages(
                [conns['/joint_states'], conns[command_topic]]
            ):
                if conn.topic == command_topic:
                    commands.append(deserialize_message(raw, JointTrajectory))
                else:
                    js = deserialize_message(raw, JointState)
                    order = [list(js.name).index(n) for n in kin.JOINT_NAMES]
                    q.append(np.asarray(js.position)[order])
        assert len(commands) == n_commands
        q = np.array(q)
        tcp0 = tcp_point(kin.fk_matrix(q[0]), TCP_OFFSET_2F85)
        target = np.asarray(by_seed[seed]['target'])
        if seed == 2000:  # starts at rest, near the target, not at home
            assert np.linalg.norm(tcp0 - target) < 0.2
            assert np.abs(q[1] - q[0]).max() < 1e-4
        else:  # a stretch of ~pause_s at rest away from the start and from the target
            speed = np.abs(np.diff(q, axis=0)).max(axis=1) * 100.0  # rad/s at 100 Hz
            moving = np.flatnonzero(speed > 0.05)
            gaps = np.diff(moving)
            assert gaps.max() * 0.01 > 0.5 * by_seed[seed]['pause_s']
            i = moving[np.argmax(gaps)] + 1
            assert np.linalg.norm(tcp_point(kin.fk_matrix(q[i]), TCP_OFFSET_2F85) - target) > 0.03
