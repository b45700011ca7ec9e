"""
End-to-end tests of the converter core (:func:`kinova_policy_ros.bag.convert.convert_bag`).

The bags are real rosbag2 recordings written with the rosbags Writer
(kinova_policy_ros.testing.bag_synthetic). Every expected value is recomputed here from their
closed-form content with numpy only (np.interp, np.unwrap, explicit rotations), not with the
converter's own helpers.
"""

from dataclasses import replace
import json
from pathlib import Path
import re
from typing import Any

import cv2
from helpers import ls
from kinova_policy_ros.bag.convert import convert_bag, output_paths, output_stem
from kinova_policy_ros.bag.options import ConvertOptions
from kinova_policy_ros.bag.report import BagReport
from kinova_policy_ros.core import image_codec
from kinova_policy_ros.core import kinematics as kin
from kinova_policy_ros.core.errors import BagError, KinovaPolicyError
from kinova_policy_ros.data.schema import load_episode
from kinova_policy_ros.testing import bag_synthetic as syn
import numpy as np
import pytest
from rosbags.typesys import get_typestore, Stores

TS = get_typestore(Stores.ROS2_HUMBLE)


def _convert(bag: Path, out: Path, **options: Any) -> tuple[list[Path], BagReport]:
    """Convert one bag without a progress bar; ``options`` override ConvertOptions fields."""
    return convert_bag(bag, out, replace(ConvertOptions(), progress=False, **options))


def _expected_joints(truth: syn.SynthTruth, stamps: np.ndarray, t0: int) -> tuple:
    """Q and dq at ``stamps``: np.interp of the (wrapped, then np.unwrap-ed) joint messages."""
    tj = (truth.joint_stamps - t0) * 1e-9
    wrapped = (syn.joint_positions(tj) + np.pi) % (2 * np.pi) - np.pi
    cont = [0, 2, 4, 6]
    wrapped[:, cont] = np.unwrap(wrapped[:, cont], axis=0)
    vel = syn.joint_velocities(tj)
    ts = (stamps - t0) * 1e-9
    q = np.stack([np.interp(ts, tj, wrapped[:, k]) for k in range(7)], axis=1)
    dq = np.stack([np.interp(ts, tj, vel[:, k]) for k in range(7)], axis=1)
    turns = np.round((q[0, cont] - ((q[0, cont] + np.pi) % (2 * np.pi) - np.pi)) / (2 * np.pi))
    q[:, cont] -= turns * 2 * np.pi
    return q, dq


def _expected_ee(stamps: np.ndarray, t0: int) -> tuple[np.ndarray, np.ndarray]:
    """Compose base -> tool_frame (z rotation, linear translation) and the static x rotation."""
    ts = (stamps - t0) * 1e-9
    a = 0.2 + 0.5 * ts
    xyz = np.stack([0.3 + 0.1 * ts, -0.2 + 0.05 * ts, np.full_like(ts, 0.4 + 0.1)], axis=1)
    rpy = np.stack([np.full_like(ts, np.pi / 2), np.zeros_like(ts), a], axis=1)
    return xyz, rpy


SCENARIOS = [
    # storage, compression, rgb, depth, rgb topic
    ('sqlite3', 'none', 'rgb8', '16UC1', '/camera/color/image_raw'),
    ('mcap', 'none', 'jpeg', '16UC1', '/camera/color/image_raw/compressed'),
    ('sqlite3', 'file', 'bgr8', '32FC1', '/camera/color/image_raw'),
    ('mcap', 'message', 'png', 'compressedDepth', '/camera/color/image_raw/compressed'),
    ('sqlite3', 'message', 'bgra8', '16UC1', '/camera/color/image_raw'),
    ('mcap', 'storage', 'mono8', '16UC1', '/camera/color/image_raw'),
]


@pytest.mark.parametrize(('storage', 'compression', 'rgb', 'depth', 'rgb_topic'), SCENARIOS)
def test_convert_checks_every_array(
    tmp_path: Path, storage: str, compression: str, rgb: str, depth: str, rgb_topic: str
) -> None:
    depth_topic = (
        '/camera/depth/image_raw/compressedDepth'
        if depth == 'compressedDepth'
        else '/camera/depth/image_raw'
    )
    spec = syn.SynthSpec(
        storage=storage,
        compression=compression,
        rgb=rgb,
        depth=depth,
        rgb_topic=rgb_topic,
        depth_topic=depth_topic,
        depth_drop=(5,),
        rgb_step_pad=3 if rgb in ('rgb8', 'bgr8') else 0,
    )
    bag = tmp_path / f'demo_{storage}'
    truth = syn.write_bag(bag, spec)
    out = tmp_path / 'out'
    paths, returned = _convert(bag, out, rgb_topic=rgb_topic, depth_topic=depth_topic)
    assert paths == [out / f'{bag.name}.npz']
    ep = load_episode(out / f'{bag.name}.npz')
    keep = [i for i in range(spec.n_frames) if i != 5]  # frame 5 lost its depth frame
    np.testing.assert_array_equal(ep.stamp_ns, truth.rgb_stamps[keep])
    for k, i in enumerate(keep):
        want = syn.rgb_frame(i, spec.height, spec.width)
        if rgb == 'mono8':
            want = np.repeat(want[..., :1], 3, axis=2)
        if rgb == 'jpeg':
            assert np.abs(ep.rgb[k].astype(int) - want).mean() < 3.0
        else:
            np.testing.assert_array_equal(ep.rgb[k], want)
        d = syn.depth_frame(i, spec.height, spec.width)
        if depth == '32FC1':
            d[0, 1] = 0.0  # NaN in the message -> 0
        np.testing.assert_allclose(ep.depth[k], d, atol=1e-6)
    assert ep.depth.dtype == np.float32 and np.isfinite(ep.depth).all()
    q, dq = _expected_joints(truth, ep.stamp_ns, spec.start_ns)
    np.testing.assert_allclose(ep.q, q, atol=1e-9)
    np.testing.assert_allclose(ep.dq, dq, atol=1e-9)
    assert ep.q[:, 2].max() > np.pi  # joint_3 crossed +pi and stayed continuous
    assert np.abs(np.diff(ep.q, axis=0)).max() < 0.2
    xyz, rpy = _expected_ee(ep.stamp_ns, spec.start_ns)
    np.testing.assert_allclose(ep.ee_xyz, xyz, atol=1e-9)
    np.testing.assert_allclose(ep.ee_rpy, rpy, atol=1e-9)
    np.testing.assert_allclose(ep.camera_K, truth.camera_K)
    np.testing.assert_allclose(ep.camera_D, truth.camera_D)
    assert (ep.camera_width, ep.camera_height) == (spec.width, spec.height)
    assert ep.joint_names == kin.JOINT_NAMES
    report = json.loads((out / f'{bag.name}.json').read_text())
    assert report['frames'] == {
        'rgb_messages': 20,
        'kept': 19,
        'dropped': {
            'no_depth': 1,
            'joint_gap': 0,
            'no_joint_state': 0,
            'duplicate_stamp': 0,
            'short_segment': 0,
        },
    }
    assert report['storage'] == storage and report['ee_pose']['source'] == 'tf'
    assert report['depth']['max_offset_s'] == pytest.approx(0.004)
    assert report['time']['rate_hz'] == pytest.approx(30.0)
    assert report['output'] == f'{bag.name}.npz'
    assert returned['outputs'] == [f'{bag.name}.npz'] and returned['frames'] == report['frames']


def test_rclpy_serialized_joint_states(tmp_path: Path) -> None:
    rclpy_ser = pytest.importorskip('rclpy.serialization')
    msgs = pytest.importorskip('sensor_msgs.msg')

    def serialize(stamp: int, names: list, pos: np.ndarray, vel: np.ndarray) -> bytes:
        m = msgs.JointState()
        m.header.stamp.sec, m.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
        m.name, m.position, m.velocity = list(names), pos.tolist(), vel.tolist()
        return bytes(rclpy_ser.serialize_message(m))

    raw = serialize(1, ['a', 'b'], np.zeros(2), np.zeros(2))
    with pytest.raises(Exception, match='size mismatch'):
        TS.deserialize_cdr(raw, 'sensor_msgs/msg/JointState')  # strict rosbags rejects it
    bag = tmp_path / 'rclpy_bag'
    truth = syn.write_bag(bag, syn.SynthSpec(joint_serializer=serialize))
    assert _convert(bag, tmp_path / 'out')[0] == [tmp_path / 'out' / 'rclpy_bag.npz']
    ep = load_episode(tmp_path / 'out' / 'rclpy_bag.npz')
    q, dq = _expected_joints(truth, ep.stamp_ns, syn.SynthSpec().start_ns)
    np.testing.assert_allclose(ep.q, q, atol=1e-9)
    np.testing.assert_allclose(ep.dq, dq, atol=1e-9)


def test_resize_scales_k_and_keeps_depth_values(tmp_path: Path) -> None:
    spec = syn.SynthSpec(n_frames=6, depth_hw=(24, 32))  # depth at half resolution
    truth = syn.write_bag(tmp_path / 'b', spec)
    paths, _ = _convert(tmp_path / 'b', tmp_path / 'o', resize=(24, 32))
    assert paths == [tmp_path / 'o' / 'b.npz']
    ep = load_episode(tmp_path / 'o' / 'b.npz')
    assert ep.rgb.shape == (6, 24, 32, 3) and ep.depth.shape == (6, 24, 32)
    want = cv2.resize(syn.rgb_frame(0, 48, 64), (32, 24), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(ep.rgb[0], want)
    np.testing.assert_allclose(ep.depth[2], syn.depth_frame(2, 24, 32), atol=1e-6)
    k = truth.camera_K.copy()
    k[0] *= 0.5
    k[1] *= 0.5
    np.testing.assert_allclose(ep.camera_K, k)
    assert (ep.camera_width, ep.camera_height) == (32, 24)
    # Depth at a lower resolution than RGB, no --resize: nearest upsampling, no invented values.
    assert _convert(tmp_path / 'b', tmp_path / 'o2')[0] == [tmp_path / 'o2' / 'b.npz']
    up = load_episode(tmp_path / 'o2' / 'b.npz').depth[3]
    assert up.shape == (48, 64)
    allowed = np.unique(syn.depth_frame(3, 24, 32))
    assert np.abs(np.unique(up)[:, None] - allowed[None, :]).min(axis=1).max() < 1e-6


def test_split_on_gap_and_joint_gap(tmp_path: Path) -> None:
    # Camera pause in [0.3, 0.55) s; joint states missing in [0.7, 0.85) s (gap > 0.1 s limit).
    spec = syn.SynthSpec(n_frames=30, rgb_gap=(0.3, 0.55), joint_gap=(0.7, 0.85))
    truth = syn.write_bag(tmp_path / 'g', spec)
    out = tmp_path / 'o'
    paths, _ = _convert(tmp_path / 'g', out, split_on_gap_s=0.1)
    assert paths == [out / f'g_seg0{i}.npz' for i in range(3)]
    names = sorted(p.name for p in out.iterdir())
    assert names == [f'g_seg0{i}.{ext}' for i in range(3) for ext in ('json', 'npz')]
    eps = [load_episode(out / f'g_seg0{i}.npz') for i in range(3)]
    t = (truth.rgb_stamps - spec.start_ns) * 1e-9
    tj = (truth.joint_stamps - spec.start_ns) * 1e-9
    lo = np.searchsorted(tj, t, side='right') - 1
    gap_ok = (tj[np.minimum(lo + 1, len(tj) - 1)] - tj[lo]) <= 0.1 + 1e-9
    assert 0 < int(np.sum(~gap_ok)) < 8
    want = truth.rgb_stamps[gap_ok]
    np.testing.assert_array_equal(np.concatenate([e.stamp_ns for e in eps]), want)
    # segment 0 ends before the camera pause, 1 spans the pause to the joint gap, 2 after it
    assert (
        eps[0].stamp_ns[-1] < spec.start_ns + 0.3e9 <= spec.start_ns + 0.55e9 <= eps[1].stamp_ns[0]
    )
    assert (
        eps[1].stamp_ns[-1] < spec.start_ns + 0.7e9 < spec.start_ns + 0.85e9 <= eps[2].stamp_ns[0]
    )
    for e in eps:
        assert np.all(np.diff(e.stamp_ns) <= 0.1e9)
        assert -np.pi <= e.q[0, 2] < np.pi  # continuous joints start in [-pi, pi) per episode
    report = json.loads((out / 'g_seg01.json').read_text())
    assert report['frames']['dropped']['joint_gap'] == int(np.sum(~gap_ok))
    assert report['segment']['index'] == 1 and report['segment']['of'] == 3
    assert report['segment']['frames'] == len(eps[1].stamp_ns)


def test_finite_difference_velocity_and_fk_without_tf(tmp_path: Path) -> None:
    spec = syn.SynthSpec(joint_velocity=False, tf='none')
    truth = syn.write_bag(tmp_path / 'n', spec)
    assert _convert(tmp_path / 'n', tmp_path / 'o')[0] == [tmp_path / 'o' / 'n.npz']
    ep = load_episode(tmp_path / 'o' / 'n.npz')
    t = (ep.stamp_ns - spec.start_ns) * 1e-9
    np.testing.assert_allclose(ep.dq, syn.joint_velocities(t), atol=0.02)
    xyz, rpy = kin.fk(ep.q)
    np.testing.assert_allclose(ep.ee_xyz, xyz, atol=1e-12)
    np.testing.assert_allclose(ep.ee_rpy, rpy, atol=1e-12)
    report = json.loads((tmp_path / 'o' / 'n.json').read_text())
    assert report['joints']['velocity_source'] == 'finite_difference'
    assert report['ee_pose']['source'] == 'fk'
    assert truth.joint_names[:2] != list(kin.JOINT_NAMES[:2])  # names really were shuffled


def test_tf_chain_of_gen3_matches_forward_kinematics(tmp_path: Path) -> None:
    syn.write_bag(tmp_path / 'k', syn.SynthSpec(tf='gen3', tf_rate_hz=200.0))
    assert _convert(tmp_path / 'k', tmp_path / 'o')[0] == [tmp_path / 'o' / 'k.npz']
    ep = load_episode(tmp_path / 'o' / 'k.npz')
    report = json.loads((tmp_path / 'o' / 'k.json').read_text())
    assert report['ee_pose']['source'] == 'tf'
    assert report['ee_pose']['fk_fallback_frames'] == 0
    xyz, rpy = kin.fk(ep.q)
    np.testing.assert_allclose(ep.ee_xyz, xyz, atol=2e-3)
    np.testing.assert_allclose(kin.rpy_to_matrix(ep.ee_rpy), kin.rpy_to_matrix(rpy), atol=5e-3)


def test_missing_camera_info_allowed_and_overwrite(tmp_path: Path) -> None:
    syn.write_bag(tmp_path / 'c', syn.SynthSpec(camera_info=False, n_frames=5))
    out = tmp_path / 'o'
    missing = "camera info topic '/camera/color/camera_info' is not in the bag"
    with pytest.raises(BagError, match=re.escape(missing)):
        _convert(tmp_path / 'c', out)
    assert not out.exists() or not list(out.iterdir())
    assert _convert(tmp_path / 'c', out, allow_missing_camera_info=True)[0] == [out / 'c.npz']
    ep = load_episode(out / 'c.npz')
    assert not ep.camera_K.any() and ep.camera_D.shape == (0,)
    before = (out / 'c.npz').read_bytes(), (out / 'c.npz').stat().st_ino
    with pytest.raises(BagError, match='exists; use --overwrite'):
        _convert(tmp_path / 'c', out, allow_missing_camera_info=True)
    # untouched: same file (an atomic rewrite would be a new inode), same content
    assert ((out / 'c.npz').read_bytes(), (out / 'c.npz').stat().st_ino) == before
    kw = {'allow_missing_camera_info': True, 'overwrite': True}
    assert _convert(tmp_path / 'c', out, split_on_gap_s=1.0, **kw)[0] == [out / 'c_seg00.npz']
    assert sorted(p.name for p in out.iterdir()) == ['c_seg00.json', 'c_seg00.npz']


# ----------------------------------------------------------------------------- failure corpus


def _image_bytes(stamp: int, enc: str = 'rgb8', h: int = 48, w: int = 64) -> bytes:
    fields = image_codec.encode_rgb8(syn.rgb_frame(0, h, w))
    if enc != 'rgb8':
        fields = image_codec.ImageFields(h, w, enc, 0, fields.step, fields.data)
    return syn.serialize_image(stamp, fields)


def _joint_bytes(drop: str = '', truncate: bool = False) -> object:
    def serialize(stamp: int, names: list, pos: np.ndarray, vel: np.ndarray) -> bytes:
        keep = [k for k, n in enumerate(names) if n != drop]
        msg = TS.types['sensor_msgs/msg/JointState'](
            header=syn._header(stamp, ''),
            name=[names[k] for k in keep],
            position=pos[keep],
            velocity=vel[keep] if len(vel) else vel,
            effort=np.zeros(0),
        )
        raw = TS.serialize_cdr(msg, 'sensor_msgs/msg/JointState')
        return bytes(raw[:40] if truncate else raw)

    return serialize


def _corpus(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Name -> (bag, regex the error must match); every bag fails with the default options."""
    s0 = syn.SynthSpec().start_ns
    rgb_t, depth_t = '/camera/color/image_raw', '/camera/depth/image_raw'
    image = 'sensor_msgs/msg/Image'
    cases: dict[str, tuple[Path, str]] = {}

    def bag(name: str, **kw: object) -> Path:
        p = tmp_path / name
        syn.write_bag(p, syn.SynthSpec(n_frames=6, **kw))  # type: ignore[arg-type]
        return p

    cases['missing_topic'] = (
        bag('missing_topic', depth_topic='/camera/aligned_depth'),
        rf"missing_topic: depth topic '{depth_t}' is not in the bag; the bag has: "
        r'/camera/aligned_depth \(sensor_msgs/msg/Image\), /camera/color/camera_info',
    )
    cases['every_missing_stream'] = (
        bag('every_missing_stream', rgb_topic='/a', depth_topic='/b', camera_info=False),
        r"every_missing_stream: 3 topics are missing or unusable: RGB topic '/camera/color/"
        rf"image_raw' is not in the bag; depth topic '{depth_t}' is not in the bag; camera "
        r"info topic '/camera/color/camera_info' is not in the bag; the bag has: /a \(",
    )
    cases['empty_topic'] = (
        bag('empty_topic', depth_topic='/other', extra_topics={depth_t: (image, [])}),
        rf"empty_topic: depth topic '{depth_t}' is empty \(0 messages\)",
    )
    yuv = [(s0 + k, _image_bytes(s0 + k, 'yuv422')) for k in range(3)]
    cases['unknown_encoding'] = (
        bag('unknown_encoding', rgb_topic='/x', extra_topics={rgb_t: (image, yuv)}),
        rf"unknown_encoding: topic '{rgb_t}' message 0: unsupported RGB image encoding 'yuv422'",
    )
    back = [(s0 + k * 1000, _image_bytes(s0 + (3 - k) * 33_000_000)) for k in range(3)]
    cases['non_monotonic'] = (
        bag('non_monotonic', rgb_topic='/x', extra_topics={rgb_t: (image, back)}),
        rf"non_monotonic: topic '{rgb_t}': stamps are not monotonic",
    )
    info = {'/camera/color/camera_info': (image, back)}
    cases['wrong_type'] = (
        bag('wrong_type', camera_info=False, extra_topics=info),
        r"wrong_type: camera info topic '/camera/color/camera_info' has type "
        r'sensor_msgs/msg/Image, expected sensor_msgs/msg/CameraInfo',
    )
    cases['missing_joint'] = (
        bag('missing_joint', joint_serializer=_joint_bytes(drop='joint_7')),
        r"missing_joint: topic '/joint_states': joint 'joint_7' missing; the message has \[",
    )
    cases['corrupt_message'] = (
        bag('corrupt_message', joint_serializer=_joint_bytes(truncate=True)),
        r"corrupt_message: topic '/joint_states': sensor_msgs/msg/JointState: cannot "
        r'deserialize 40 bytes',
    )
    trunc = bag('truncated_db3')
    db3 = next(trunc.glob('*.db3'))
    db3.write_bytes(db3.read_bytes()[: db3.stat().st_size // 3])
    cases['truncated_db3'] = (trunc, r'truncated_db3.*(truncated or corrupt|malformed)')
    mc = bag('truncated_mcap', storage='mcap')
    mcap = next(mc.glob('*.mcap'))
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])
    cases['truncated_mcap'] = (mc, r'truncated_mcap.*truncated or corrupt')
    cor = bag('corrupt_mcap', storage='mcap')
    mcap = next(cor.glob('*.mcap'))
    data = bytearray(mcap.read_bytes())
    data[100:300] = b'\xff' * 200  # garbage record headers
    mcap.write_bytes(bytes(data))
    cases['corrupt_mcap'] = (cor, r'corrupt_mcap: cannot read messages \(truncated or corrupt')
    no_bag = tmp_path / 'not_a_bag'
    no_bag.mkdir()
    (no_bag / 'notes.txt').write_text('x')
    cases['not_a_bag'] = (no_bag, r'not_a_bag: not a rosbag2 directory \(no metadata.yaml')
    return cases


@pytest.mark.parametrize('compress', [True, False])
def test_failure_corpus(tmp_path: Path, compress: bool) -> None:
    cases = _corpus(tmp_path)
    good = tmp_path / 'good'
    syn.write_bag(good, syn.SynthSpec(n_frames=6))
    for name, (bag, pattern) in cases.items():
        out = tmp_path / f'out_{name}'
        with pytest.raises(KinovaPolicyError, match=pattern):
            _convert(bag, out, compress=compress)
        assert not out.exists() or ls(out) == [], name  # no partial output, no temp file
        _convert(good, out, compress=compress)  # the next bag converts into the same folder
        names = sorted(p.name for p in out.iterdir())
        assert names == ['good.json', 'good.npz'], (name, names)


def test_output_names(tmp_path: Path) -> None:
    bag = tmp_path / 'rec_1'
    syn.write_bag(bag, syn.SynthSpec(n_frames=3))
    assert output_stem(bag) == 'rec_1'
    assert output_stem(next(bag.glob('*.db3'))) == 'rec_1'  # a storage file names its bag
    assert output_stem(tmp_path / 'loose.mcap') == 'loose'  # not a bag (yet): the file stem
    assert output_paths(tmp_path, 'r', None) == [tmp_path / 'r.npz']
    assert output_paths(tmp_path, 'r', 2) == [tmp_path / 'r_seg00.npz', tmp_path / 'r_seg01.npz']


def test_segments_shorter_than_min_frames_are_dropped(tmp_path: Path) -> None:
    # 30 Hz, camera pause in [0.2, 0.5) s: frames 0-5 before it, 15-23 after (15 frames)
    spec = syn.SynthSpec(n_frames=24, rgb_gap=(0.2, 0.5))
    truth = syn.write_bag(tmp_path / 's', spec)
    paths, report = _convert(tmp_path / 's', tmp_path / 'o', split_on_gap_s=0.1, min_frames=7)
    assert paths == [tmp_path / 'o' / 's_seg00.npz']  # the 6-frame segment is not written
    assert report['frames']['dropped']['short_segment'] == 6
    assert report['frames']['kept'] == len(truth.rgb_stamps) - 6 == 9
    np.testing.assert_array_equal(load_episode(paths[0]).stamp_ns, truth.rgb_stamps[6:])
    too_short = (
        r's: no episode of at least 10 frames is left after synchronisation '
        r"\(15 RGB frames on '/camera/color/image_raw'"
    )
    with pytest.raises(BagError, match=too_short):
        _convert(tmp_path / 's', tmp_path / 'o2', split_on_gap_s=0.1, min_frames=10)
    assert not (tmp_path / 'o2').exists() or ls(tmp_path / 'o2') == []


def test_overwrite_removes_only_stale_outputs_of_the_same_bag(tmp_path: Path) -> None:
    syn.write_bag(tmp_path / 'c', syn.SynthSpec(n_frames=4))
    out = tmp_path / 'o'
    out.mkdir()
    for name in ('c_seg00.npz', 'c_seg00.json', 'c_seg01.npz', 'cc.npz', 'c.txt'):
        (out / name).write_text('old')
    assert _convert(tmp_path / 'c', out, overwrite=True)[0] == [out / 'c.npz']
    assert ls(out) == ['c.json', 'c.npz', 'c.txt', 'cc.npz']  # other names are not the bag's
    refused = r'c: output .*c\.json exists; use --overwrite to replace it \(2 existing file'
    with pytest.raises(BagError, match=refused):
        _convert(tmp_path / 'c', out)


def test_intrinsics_follow_the_centre_crop_to_another_aspect(tmp_path: Path) -> None:
    """16:9 frames (kinova_vision's colour) converted to a 3:4 size: K moves into the kept box."""
    spec = syn.SynthSpec(n_frames=4, height=36, width=64)
    truth = syn.write_bag(tmp_path / 'wide', spec)
    _, report = _convert(tmp_path / 'wide', tmp_path / 'o', resize=(24, 32))
    ep = load_episode(tmp_path / 'o' / 'wide.npz')
    # the box: full height 36, width 36 * 32 / 24 = 48, centred: left (64 - 48) / 2 = 8
    assert report['camera_info']['crop_box'] == [0, 8, 36, 48]
    k = truth.camera_K.copy()
    k[0, 2] -= 8
    k[0] *= 32 / 48
    k[1] *= 24 / 36
    np.testing.assert_allclose(ep.camera_K, k)
    assert report['camera_info']['k_scale_xy'] == pytest.approx([32 / 48, 24 / 36])
