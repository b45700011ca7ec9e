"""
Synthetic demonstration bags (rosbags Writer, no ROS) for the converter's tests and benchmark.

:func:`write_bag` writes a rosbag2 recording (sqlite3 or MCAP, optionally compressed) with the
topics ``ros2 bag record`` stores on a Gen3 with an RGB-D camera: RGB (raw or compressed),
depth (16UC1, 32FC1 or compressedDepth) offset in time from RGB, ``/joint_states`` in shuffled
order with gripper joints, CameraInfo and TF. Every value is a closed-form function of time or
frame index (:func:`rgb_frame`, :func:`depth_frame`, :func:`joint_positions`,
:func:`tf_pose`), so tests can recompute what the converter must output.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
import heapq
import math
from pathlib import Path
from typing import TYPE_CHECKING

from kinova_policy_ros.core import image_codec
from kinova_policy_ros.core import kinematics as kin
from kinova_policy_ros.testing.bag_metadata import merge_split_metadata
from kinova_policy_ros.testing.mcap_synthetic import McapChannelSpec, write_mcap
import numpy as np
import numpy.typing as npt
from rosbags.interfaces import Connection
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.enums import CompressionFormat, CompressionMode
from rosbags.typesys import get_typestore, Stores

if TYPE_CHECKING:
    from rosbags.typesys.store import MsgType

__all__ = [
    'GRIPPER_JOINTS',
    'STATIC_EE',
    'McapChannelSpec',
    'SynthSpec',
    'SynthTruth',
    'depth_frame',
    'joint_positions',
    'joint_velocities',
    'rgb_frame',
    'serialize_image',
    'tf_pose',
    'write_bag',
    'write_mcap',
]

TS = get_typestore(Stores.ROS2_HUMBLE)
Vec3 = tuple[float, float, float]
Quat = tuple[float, float, float, float]
#: One transform of a TFMessage: (stamp ns, parent frame, child frame, xyz, quaternion xyzw).
_Transform = tuple[int, str, str, Vec3, Quat]
#: One message of a synthetic bag: (bag time ns, topic order at equal times, topic, CDR bytes).
StreamItem = tuple[int, int, str, bytes | memoryview]
#: (header stamp ns, names, positions, velocities) -> CDR bytes of a JointState.
JointSerializer = Callable[
    [int, list[str], npt.NDArray[np.float64], npt.NDArray[np.float64]], bytes
]
GRIPPER_JOINTS = ('robotiq_85_left_knuckle_joint', 'finger_joint')
#: Static transform tool_frame -> end_effector_link (xyz, quaternion xyzw): 90 deg about x.
STATIC_EE: tuple[Vec3, Quat] = (
    (0.0, 0.0, 0.1),
    (math.sin(math.pi / 4), 0.0, 0.0, math.cos(math.pi / 4)),
)


@dataclass
class SynthSpec:
    """What to put in a synthetic bag (all stamps in ns, rates in Hz)."""

    n_frames: int = 20
    rate_hz: float = 30.0
    height: int = 48
    width: int = 64
    rgb: str = 'rgb8'  # rgb8 bgr8 rgba8 bgra8 mono8 | jpeg png (CompressedImage)
    rgb_step_pad: int = 0
    noise: int = 0  # RGB noise amplitude (and depth noise in mm), for realistic benchmarks
    depth: str = '16UC1'  # 16UC1 32FC1 | compressedDepth
    depth_hw: tuple[int, int] | None = None
    depth_offset_s: float = 0.004
    depth_drop: tuple[int, ...] = ()
    joint_rate_hz: float = 100.0
    joint_velocity: bool = True
    joint_gap: tuple[float, float] | None = None  # (start_s, end_s) without joint states
    rgb_gap: tuple[float, float] | None = None  # (start_s, end_s) without camera frames
    tf: str = 'simple'  # simple | gen3 | none
    tf_rate_hz: float = 50.0
    camera_info: bool = True
    storage: str = 'sqlite3'  # sqlite3 | mcap
    compression: str = 'none'  # none | file | message | storage
    start_ns: int = 1_700_000_000_000_000_000
    latency_ns: int = 2_000_000
    zero_header_stamps: bool = False
    rgb_topic: str = '/camera/color/image_raw'
    depth_topic: str = '/camera/depth/image_raw'
    # topic -> (message type, [(bag time ns, raw CDR bytes)]): arbitrary extra content
    extra_topics: dict[str, tuple[str, list[tuple[int, bytes]]]] = field(default_factory=dict)
    joint_serializer: JointSerializer | None = None
    # > 1: a split recording as ``ros2 bag record --max-bag-duration`` writes it: storage files
    # <name>_0.<ext>, <name>_1.<ext>, ... (equal message counts) and one metadata.yaml
    splits: int = 1


@dataclass
class SynthTruth:
    """The stamps that were written (header stamps, ns)."""

    rgb_stamps: npt.NDArray[np.int64]
    depth_stamps: npt.NDArray[np.int64]
    depth_ids: npt.NDArray[np.int64]
    joint_stamps: npt.NDArray[np.int64]
    joint_names: list[str]
    camera_K: npt.NDArray[np.float64]
    camera_D: npt.NDArray[np.float64]


def rgb_frame(i: int, h: int, w: int, noise: int = 0) -> npt.NDArray[np.uint8]:
    """
    RGB frame ``i``: a per-frame colour plus a smooth ramp (survives jpeg nearly intact).

    ``noise`` adds seeded uniform noise of that amplitude (camera-like, for benchmarks).
    """
    y, x = np.mgrid[0:h, 0:w]
    base = np.array([20 + (i * 9) % 180, 200 - (i * 7) % 150, 60 + (i * 5) % 120], np.float64)
    ramp = (x / max(w - 1, 1) * 30 + y / max(h - 1, 1) * 20)[..., None]
    img: npt.NDArray[np.float64] = base + ramp * np.array([1.0, -0.5, 0.3])
    if noise:
        img = img + np.random.default_rng(i).integers(-noise, noise + 1, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def depth_frame(j: int, h: int, w: int, noise_mm: int = 0) -> npt.NDArray[np.float32]:
    """Depth frame ``j`` in metres (whole millimetres); pixel (0, 0) is invalid (0)."""
    cols, rows = np.arange(w)[None, :], np.arange(h)[:, None]
    d: npt.NDArray[np.float64] = 500.0 + 10.0 * j + cols + 0.0 * rows
    if noise_mm:
        d = d + np.random.default_rng(10_000 + j).integers(-noise_mm, noise_mm + 1, d.shape)
    d = d / 1000.0
    d[0, 0] = 0.0
    return d.astype(np.float32)


def joint_positions(t_s: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Unwrapped arm joint positions ``[N, 7]``; joint_3 crosses +π at t = 0.3 s."""
    t = np.asarray(t_s, dtype=np.float64)[:, None]
    amp = np.array([0.4, 0.3, 0.0, 0.5, 0.6, 0.3, 0.8])
    off = np.array([0.1, 0.26, 0.0, -2.0, 0.2, 0.96, 1.5])
    q: npt.NDArray[np.float64] = off + amp * np.sin(2.0 * np.pi * 0.5 * t + np.arange(7))
    q[:, 2] = math.pi - 0.24 + 0.8 * t[:, 0]
    return q


def joint_velocities(t_s: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Velocities ``[N, 7]`` of :func:`joint_positions` (its time derivative)."""
    t = np.asarray(t_s, dtype=np.float64)[:, None]
    amp = np.array([0.4, 0.3, 0.0, 0.5, 0.6, 0.3, 0.8])
    dq: npt.NDArray[np.float64] = amp * np.pi * np.cos(2.0 * np.pi * 0.5 * t + np.arange(7))
    dq[:, 2] = 0.8
    return dq


def tf_pose(t_s: float) -> tuple[tuple[float, float, float], tuple[float, float, float, float]]:
    """Pose of tool_frame in base_link: linear translation, rotation about z linear in time."""
    angle = 0.2 + 0.5 * t_s
    xyz = (0.3 + 0.1 * t_s, -0.2 + 0.05 * t_s, 0.4)
    return xyz, (0.0, 0.0, math.sin(angle / 2), math.cos(angle / 2))


def _header(stamp_ns: int, frame: str) -> MsgType:
    time = TS.types['builtin_interfaces/msg/Time'](
        sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000
    )
    return TS.types['std_msgs/msg/Header'](stamp=time, frame_id=frame)


def _image_msg(stamp: int, frame: str, fields: image_codec.ImageFields) -> MsgType:
    return TS.types['sensor_msgs/msg/Image'](
        header=_header(stamp, frame),
        height=fields.height,
        width=fields.width,
        encoding=fields.encoding,
        is_bigendian=fields.is_bigendian,
        step=fields.step,
        data=np.frombuffer(fields.data, np.uint8),
    )


def serialize_image(stamp_ns: int, fields: image_codec.ImageFields) -> bytes:
    """CDR bytes of a ``sensor_msgs/Image`` with ``fields`` stamped ``stamp_ns``."""
    return bytes(TS.serialize_cdr(_image_msg(stamp_ns, 'camera', fields), 'sensor_msgs/msg/Image'))


def _compressed_msg(stamp: int, frame: str, fmt: str, data: bytes) -> MsgType:
    return TS.types['sensor_msgs/msg/CompressedImage'](
        header=_header(stamp, frame), format=fmt, data=np.frombuffer(data, np.uint8)
    )


def _raw_rgb(img: npt.NDArray[np.uint8], enc: str, pad: int) -> image_codec.ImageFields:
    chans = {
        'rgb8': img,
        'bgr8': img[..., ::-1],
        'rgba8': np.concatenate([img, np.full((*img.shape[:2], 1), 255, np.uint8)], 2),
        'bgra8': np.concatenate([img[..., ::-1], np.full((*img.shape[:2], 1), 9, np.uint8)], 2),
        'mono8': img[..., :1],
    }[enc]
    h, w, c = chans.shape
    rows = np.zeros((h, w * c + pad), np.uint8)
    rows[:, : w * c] = chans.reshape(h, w * c)
    return image_codec.ImageFields(h, w, enc, 0, w * c + pad, rows.tobytes())


def _tf_msg(transforms: list[_Transform]) -> MsgType:
    out = []
    for stamp, parent, child, xyz, quat in transforms:
        out.append(
            TS.types['geometry_msgs/msg/TransformStamped'](
                header=_header(stamp, parent),
                child_frame_id=child,
                transform=TS.types['geometry_msgs/msg/Transform'](
                    translation=TS.types['geometry_msgs/msg/Vector3'](*xyz),
                    rotation=TS.types['geometry_msgs/msg/Quaternion'](*quat),
                ),
            )
        )
    return TS.types['tf2_msgs/msg/TFMessage'](transforms=out)


def _xyz_quat(m: npt.NDArray[np.float64]) -> tuple[Vec3, Quat]:
    """Return the translation and quaternion (x, y, z, w) of a homogeneous transform."""
    x, y, z, w = kin.matrix_to_quaternion(m[:3, :3])
    t = m[:3, 3]
    return (float(t[0]), float(t[1]), float(t[2])), (float(x), float(y), float(z), float(w))


def _gen3_edges(q: npt.NDArray[np.float64]) -> list[tuple[str, str, npt.NDArray[np.float64]]]:
    """TF edges of the Gen3 chain for one q (link frames after each joint's rotation)."""
    frames = kin.joint_frames(q)
    links = ['base_link'] + [f'gen3_link_{i + 1}' for i in range(7)]
    poses = [np.eye(4)]
    for i in range(7):
        rz = np.eye(4)
        rz[:3, :3] = kin.rpy_to_matrix([0.0, 0.0, q[i]])
        poses.append(frames[i] @ rz)
    edges = [(links[i], links[i + 1], np.linalg.inv(poses[i]) @ poses[i + 1]) for i in range(7)]
    edges.append((links[7], 'end_effector_link', np.linalg.inv(poses[7]) @ frames[7]))
    return edges


def _in_gap(t: float, gap: tuple[float, float] | None) -> bool:
    return gap is not None and gap[0] <= t < gap[1]


def _header_stamp(spec: SynthSpec, stamp: int) -> int:
    """Return the header stamp written for ``stamp`` (0 with ``zero_header_stamps``)."""
    return 0 if spec.zero_header_stamps else stamp


def _rgb_stream(spec: SynthSpec, truth: SynthTruth) -> Iterator[StreamItem]:
    h, w = spec.height, spec.width
    for i, stamp in enumerate(truth.rgb_stamps.tolist()):
        img = rgb_frame(i, h, w, spec.noise)
        header_stamp = _header_stamp(spec, stamp)
        if spec.rgb in ('jpeg', 'png'):
            fmt, data = image_codec.encode_compressed_rgb(img, spec.rgb)
            msg = _compressed_msg(header_stamp, 'camera_color', fmt, data)
            typ = 'sensor_msgs/msg/CompressedImage'
        else:
            fields = _raw_rgb(img, spec.rgb, spec.rgb_step_pad)
            msg = _image_msg(header_stamp, 'camera_color', fields)
            typ = 'sensor_msgs/msg/Image'
        yield stamp + spec.latency_ns, 0, spec.rgb_topic, TS.serialize_cdr(msg, typ)


def _depth_stream(spec: SynthSpec, truth: SynthTruth) -> Iterator[StreamItem]:
    dh, dw = spec.depth_hw or (spec.height, spec.width)
    for j, stamp in zip(truth.depth_ids.tolist(), truth.depth_stamps.tolist()):
        d = depth_frame(j, dh, dw, spec.noise)
        header_stamp = _header_stamp(spec, stamp)
        if spec.depth == 'compressedDepth':
            fmt, data = image_codec.encode_compressed_depth(d)
            msg = _compressed_msg(header_stamp, 'camera_depth', fmt, data)
            typ = 'sensor_msgs/msg/CompressedImage'
        else:
            if spec.depth == '32FC1':
                d = d.copy()
                d[0, 1] = np.nan
            fields = image_codec.encode_depth(d, spec.depth)
            msg = _image_msg(header_stamp, 'camera_depth', fields)
            typ = 'sensor_msgs/msg/Image'
        yield stamp + spec.latency_ns + 1000, 1, spec.depth_topic, TS.serialize_cdr(msg, typ)


def _joint_stream(spec: SynthSpec, truth: SynthTruth) -> Iterator[StreamItem]:
    names = truth.joint_names
    arm = list(kin.JOINT_NAMES)
    t = (truth.joint_stamps - spec.start_ns) * 1e-9
    q = kin.wrap_to_pi(joint_positions(t))
    dq = joint_velocities(t)
    for k, stamp in enumerate(truth.joint_stamps.tolist()):
        pos = np.array([q[k, arm.index(n)] if n in arm else 0.04 for n in names])
        vel = np.array([dq[k, arm.index(n)] if n in arm else 0.0 for n in names])
        if not spec.joint_velocity:
            vel = np.zeros(0)
        if spec.joint_serializer is not None:
            raw: bytes | memoryview = spec.joint_serializer(
                _header_stamp(spec, stamp), names, pos, vel
            )
        else:
            msg = TS.types['sensor_msgs/msg/JointState'](
                header=_header(_header_stamp(spec, stamp), ''),
                name=names,
                position=pos,
                velocity=vel,
                effort=np.zeros(0),
            )
            raw = bytes(TS.serialize_cdr(msg, 'sensor_msgs/msg/JointState'))
        yield stamp + 500_000, 2, '/joint_states', raw


def _tf_stream(spec: SynthSpec, truth: SynthTruth) -> Iterator[StreamItem]:
    s0 = spec.start_ns
    n = int(((truth.rgb_stamps[-1] - s0) * 1e-9 + 0.07) * spec.tf_rate_hz) + 1
    for k in range(n):
        stamp = s0 - 20_000_000 + int(k * 1e9 / spec.tf_rate_hz)
        if spec.tf == 'simple':
            xyz, quat = tf_pose((stamp - s0) * 1e-9)
            msg = _tf_msg([(stamp, 'base_link', 'tool_frame', xyz, quat)])
        else:
            q = joint_positions(np.array([(stamp - s0) * 1e-9]))[0]
            msg = _tf_msg([(stamp, p, c, *_xyz_quat(m)) for p, c, m in _gen3_edges(q)[:7]])
        yield stamp + 300_000, 3, '/tf', TS.serialize_cdr(msg, 'tf2_msgs/msg/TFMessage')


def _camera_info(spec: SynthSpec, truth: SynthTruth) -> memoryview:
    info = TS.types['sensor_msgs/msg/CameraInfo'](
        header=_header(spec.start_ns, 'camera_color'),
        height=spec.height,
        width=spec.width,
        distortion_model='plumb_bob',
        d=truth.camera_D,
        k=truth.camera_K.reshape(-1),
        r=np.eye(3).reshape(-1),
        p=np.zeros(12),
        binning_x=0,
        binning_y=0,
        roi=TS.types['sensor_msgs/msg/RegionOfInterest'](0, 0, 0, 0, False),
    )
    return TS.serialize_cdr(info, 'sensor_msgs/msg/CameraInfo')


def _static_tf(spec: SynthSpec) -> memoryview:
    """``/tf_static``: tool_frame -> end_effector_link (simple) or the Gen3's last link's edge."""
    s0 = spec.start_ns
    if spec.tf == 'simple':
        edges: list[_Transform] = [(s0, 'tool_frame', 'end_effector_link', *STATIC_EE)]
    else:
        p, c, m = _gen3_edges(np.zeros(7))[7]
        edges = [(s0, p, c, *_xyz_quat(m))]
    return TS.serialize_cdr(_tf_msg(edges), 'tf2_msgs/msg/TFMessage')


def _once(spec: SynthSpec, truth: SynthTruth) -> Iterator[StreamItem]:
    """Yield the messages written once, before the first frame: CameraInfo, ``/tf_static``."""
    if spec.camera_info:
        yield spec.start_ns - 10_000_000, 4, '/camera/color/camera_info', _camera_info(spec, truth)
    if spec.tf != 'none':
        yield spec.start_ns - 10_000_000, 5, '/tf_static', _static_tf(spec)


def _streams(spec: SynthSpec, truth: SynthTruth) -> Iterator[StreamItem]:
    """Yield (bag_ns, seq, topic, payload) of every topic in time order; payloads built lazily."""
    gens = [
        _rgb_stream(spec, truth),
        _depth_stream(spec, truth),
        _joint_stream(spec, truth),
        _once(spec, truth),
    ]
    if spec.tf != 'none':
        gens.append(_tf_stream(spec, truth))
    for topic, (_, items) in spec.extra_topics.items():
        gens.append(iter([(bag_ns, 6, topic, raw) for bag_ns, raw in items]))
    return heapq.merge(*gens, key=lambda x: (x[0], x[1]))


def _truth(spec: SynthSpec) -> SynthTruth:
    s0 = spec.start_ns
    t_rgb = np.arange(spec.n_frames) / spec.rate_hz
    t_rgb = np.array([t for t in t_rgb if not _in_gap(t, spec.rgb_gap)])
    rgb = s0 + np.round(t_rgb * 1e9).astype(np.int64)
    ids = np.array([j for j in range(len(rgb)) if j not in spec.depth_drop], dtype=np.int64)
    depth = rgb[ids] + round(spec.depth_offset_s * 1e9)
    t_end = t_rgb[-1] + 0.05
    t_j = np.arange(-0.05, t_end, 1.0 / spec.joint_rate_hz)
    t_j = np.array([t for t in t_j if not _in_gap(t, spec.joint_gap)])
    joints = s0 + 1_300_000 + np.round(t_j * 1e9).astype(np.int64)
    names = [*kin.JOINT_NAMES, *GRIPPER_JOINTS]
    order = np.random.default_rng(3).permutation(len(names))
    k = np.array([[50.0, 0.0, spec.width / 2], [0.0, 52.0, spec.height / 2], [0.0, 0.0, 1.0]])
    return SynthTruth(
        rgb_stamps=rgb,
        depth_stamps=depth,
        depth_ids=ids,
        joint_stamps=joints,
        joint_names=[names[i] for i in order],
        camera_K=k,
        camera_D=np.array([0.1, -0.05, 0.001, 0.002, 0.0]),
    )


def _types(spec: SynthSpec) -> dict[str, str]:
    """Return the message type of every topic of the bag."""
    types = {
        spec.rgb_topic: 'sensor_msgs/msg/CompressedImage'
        if spec.rgb in ('jpeg', 'png')
        else 'sensor_msgs/msg/Image',
        spec.depth_topic: 'sensor_msgs/msg/CompressedImage'
        if spec.depth == 'compressedDepth'
        else 'sensor_msgs/msg/Image',
        '/joint_states': 'sensor_msgs/msg/JointState',
        '/camera/color/camera_info': 'sensor_msgs/msg/CameraInfo',
        '/tf': 'tf2_msgs/msg/TFMessage',
        '/tf_static': 'tf2_msgs/msg/TFMessage',
    }
    for topic, (msgtype, _) in spec.extra_topics.items():
        types[topic] = msgtype
    return types


def _write_storage(path: Path, spec: SynthSpec, items: Iterator[StreamItem]) -> None:
    """Write one rosbag2 directory at ``path`` holding ``items``."""
    types = _types(spec)
    plugin = StoragePlugin.MCAP if spec.storage == 'mcap' else StoragePlugin.SQLITE3
    writer = Writer(path, version=8, storage_plugin=plugin)
    if spec.compression != 'none':
        mode = {
            'file': CompressionMode.FILE,
            'message': CompressionMode.MESSAGE,
            'storage': CompressionMode.STORAGE,
        }[spec.compression]
        writer.set_compression(mode, CompressionFormat.ZSTD)
    with writer:
        conns: dict[str, Connection] = {}
        for topic, (_, extra) in spec.extra_topics.items():
            if not extra:  # an empty topic: a connection without messages
                conns[topic] = writer.add_connection(topic, types[topic], typestore=TS)
        for bag_ns, _, topic, raw in items:
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, types[topic], typestore=TS)
            writer.write(conns[topic], bag_ns, raw)


def _write_splits(path: Path, spec: SynthSpec, items: list[StreamItem]) -> None:
    """Write ``items`` as ``spec.splits`` storage files of one bag directory with its metadata."""
    import shutil
    import tempfile

    import yaml

    n = spec.splits
    bounds = [round(k * len(items) / n) for k in range(n + 1)]
    path.mkdir(parents=True)
    metas = []
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        for k in range(n):
            part = Path(tmp) / f'{path.name}_{k}'
            _write_storage(part, spec, iter(items[bounds[k]:bounds[k + 1]]))
            metas.append(yaml.safe_load((part / 'metadata.yaml').read_text()))
            for f in part.iterdir():
                if f.name != 'metadata.yaml':
                    shutil.move(str(f), path / f.name)
    text = yaml.safe_dump(merge_split_metadata(metas), sort_keys=False)
    (path / 'metadata.yaml').write_text(text)


def write_bag(path: str | Path, spec: SynthSpec | None = None) -> SynthTruth:
    """Write a synthetic bag directory at ``path`` (must not exist); return what was written."""
    spec = spec or SynthSpec()
    truth = _truth(spec)
    if spec.splits > 1:
        if spec.compression == 'file':
            raise ValueError('splits: not with file compression')
        _write_splits(Path(path), spec, list(_streams(spec, truth)))
    else:
        _write_storage(Path(path), spec, _streams(spec, truth))
    return truth
