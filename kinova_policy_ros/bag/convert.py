"""
Conversion of one rosbag2 recording to npz episodes (the engine behind ``bag_to_npz``).

One streaming pass over the bag (:class:`~kinova_policy_ros.bag.collect.FrameCollector`): RGB
and depth frames are decoded straight into preallocated output arrays, and for one uncompressed
output file they are written into it while the bag is still being read; joint states / TF /
CameraInfo are collected (they are small). At the end the frames without a matching depth or
joint state are dropped in place (the streamed file is then discarded and the kept frames are
written the ordinary way), the episode is split into segments if asked, and every segment is
validated and written atomically with its JSON report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import re

from kinova_policy_ros import __version__
from kinova_policy_ros.bag.collect import FrameCollector
from kinova_policy_ros.bag.layout import locate
from kinova_policy_ros.bag.options import ConvertOptions
from kinova_policy_ros.bag.reader import BagSource, TopicRequirement, TopicSummary
from kinova_policy_ros.bag.report import (
    BagReport,
    CameraInfoReport,
    DroppedFrames,
    options_report,
    time_span,
    TopicReport,
    topics_report,
    write_report,
)
from kinova_policy_ros.bag.sync import rebase_continuous, split_segments
from kinova_policy_ros.core import kinematics as kin
from kinova_policy_ros.core.errors import BagError
from kinova_policy_ros.core.progress import Progress, progress
from kinova_policy_ros.data.npz_writer import FrameStream
from kinova_policy_ros.data.preprocess import stream_box
from kinova_policy_ros.data.schema import Episode, save_episode
import numpy as np
import numpy.typing as npt

__all__ = ['ConvertOptions', 'convert_bag', 'output_paths', 'output_stem', 'topics_report']

IMAGE = 'sensor_msgs/msg/Image'
COMPRESSED = 'sensor_msgs/msg/CompressedImage'
JOINT_STATE = 'sensor_msgs/msg/JointState'
CAMERA_INFO = 'sensor_msgs/msg/CameraInfo'
TF_MESSAGE = 'tf2_msgs/msg/TFMessage'


def output_stem(bag: str | Path) -> str:
    """
    Name of a bag's outputs: the bag directory name, or the storage file name sans suffix.

    Storage files of a split recording read without ``metadata.yaml`` (``rec_0.db3``,
    ``rec_1.db3``) are named after the recording (``rec``), like their bag directory.
    """
    p = Path(bag)
    try:
        return locate(p, allow_partial_split=True).name
    except BagError:
        return p.name if p.is_dir() else p.stem


def output_paths(out_dir: Path, stem: str, n_segments: int | None) -> list[Path]:
    """Return the npz paths of a bag: one file, or one per segment when it is split."""
    if n_segments is None:
        return [out_dir / f'{stem}.npz']
    return [out_dir / f'{stem}_seg{i:02d}.npz' for i in range(n_segments)]


def _existing_outputs(out_dir: Path, stem: str) -> list[Path]:
    pattern = re.compile(re.escape(stem) + r'(_seg\d\d+)?\.(npz|json)$')
    if not out_dir.is_dir():
        return []
    return sorted(p for p in out_dir.iterdir() if pattern.fullmatch(p.name))


def _camera(
    col: FrameCollector,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], CameraInfoReport]:
    """Intrinsics K (scaled to the output size), distortion D and the report's camera part."""
    assert col.hw is not None and col.native_hw is not None
    h, w = col.hw
    info = col.camera_info
    if info is None:
        return np.zeros((3, 3)), np.zeros(0), {'present': False}
    k = np.asarray(info.k, dtype=np.float64).reshape(3, 3).copy()
    d = np.asarray(info.d, dtype=np.float64).reshape(-1).copy()
    iw, ih = int(info.width), int(info.height)
    nh, nw = col.native_hw
    sx, sy = (nw / iw, nh / ih) if iw > 0 and ih > 0 else (1.0, 1.0)
    k[0] *= sx  # calibrated at another resolution than the frames': to the frames' pixels
    k[1] *= sy
    # The frames are the centred box of the output's aspect, resized (collect.fit_frame):
    # move the principal point into the box, then scale.
    top, left, bh, bw = stream_box((nh, nw), (h, w))
    k[0, 2] -= left
    k[1, 2] -= top
    k[0] *= w / bw
    k[1] *= h / bh
    meta: CameraInfoReport = {
        'present': True,
        'width': iw,
        'height': ih,
        'distortion_model': str(info.distortion_model),
        'k_scale_xy': [sx * w / bw, sy * h / bh],
        'crop_box': [top, left, bh, bw],
    }
    return k, d, meta


def _fail_if_exists(bag: str, out_dir: Path, stem: str, opts: ConvertOptions) -> None:
    if opts.overwrite:
        return
    existing = _existing_outputs(out_dir, stem)
    if existing:
        raise BagError(
            f'{bag}: output {existing[0]} exists; use --overwrite to replace it '
            f'({len(existing)} existing file(s))'
        )


def convert_bag(
    bag: str | Path, out_dir: str | Path, opts: ConvertOptions, *, position: int = 0
) -> tuple[list[Path], BagReport]:
    """
    Convert one bag; return the npz paths written and the bag's report.

    Raises :class:`BagError` (naming the bag and the topic) for any bad input; nothing is
    written then.
    """
    bag_s = str(bag)
    out = Path(out_dir)
    stem = output_stem(bag)
    _fail_if_exists(bag_s, out, stem, opts)
    col: FrameCollector | None = None
    try:
        with BagSource(bag, allow_partial_split=opts.allow_partial_split) as src:
            rgb_t, depth_t, joint_t, info_t, tf_topics = _required_topics(src, opts)
            topics = src.topics()
            read = [rgb_t.name, depth_t.name, joint_t.name, *tf_topics]
            if info_t is not None:
                read.append(info_t.name)
            info_name = None if info_t is None else info_t.name
            single = opts.split_on_gap_s is None and not opts.compress
            col = FrameCollector(
                bag_s, opts, rgb_t.count, output_paths(out, stem, None)[0] if single else None
            )
            with progress(
                sum(topics[t].count for t in read),
                stem,
                unit='msg',
                disable=not opts.progress,
                position=position,
                leave=False,
                mininterval=0.5,
            ) as bar:
                names = (rgb_t.name, depth_t.name, joint_t.name)
                _read_messages(src, read, col, bar, info_name, names)
            layout = src.layout
        source = _Source(
            bag_s,
            layout.storage,
            topics_report(topics, read, opts),
            [f.name for f in layout.files],
            list(layout.missing),
        )
        return _finish(col, out, stem, opts, source)
    finally:
        if col is not None:  # deletes the stream's temp file unless _finish saved it
            col.end_stream(keep=False)


def _required_topics(
    src: BagSource, opts: ConvertOptions
) -> tuple[TopicSummary, TopicSummary, TopicSummary, TopicSummary | None, list[str]]:
    """
    Return the RGB, depth, joint-state and CameraInfo topics and the TF topics the bag has.

    One :class:`BagError` names every needed topic that is missing, empty or of another type.
    """
    topics = src.topics()
    info = topics.get(opts.camera_info_topic)
    use_info = not (opts.allow_missing_camera_info and (info is None or info.count == 0))
    tf_topics = [t for t in (opts.tf_topic, opts.tf_static_topic) if t in topics]
    needs = [
        TopicRequirement('RGB', opts.rgb_topic, (IMAGE, COMPRESSED)),
        TopicRequirement('depth', opts.depth_topic, (IMAGE, COMPRESSED)),
        TopicRequirement('joint states', opts.joint_states_topic, (JOINT_STATE,)),
    ]
    if use_info:
        needs.append(TopicRequirement('camera info', opts.camera_info_topic, (CAMERA_INFO,)))
    needs += [TopicRequirement('TF', t, (TF_MESSAGE,)) for t in tf_topics]
    found = src.require_topics(needs)
    return found[0], found[1], found[2], found[3] if use_info else None, tf_topics


def _read_messages(
    src: BagSource,
    read: list[str],
    col: FrameCollector,
    bar: Progress,
    info_name: str | None,
    names: tuple[str, str, str],
) -> None:
    opts = col.opts
    rgb_name, depth_name, joint_name = names
    for conn, bag_ns, raw in src.messages(read):
        topic = conn.topic
        if topic == info_name and col.camera_info is not None:
            bar.update()
            continue
        msg = src.deserialize(raw, conn)
        if topic == rgb_name:
            col.add_rgb(msg, bag_ns)
        elif topic == depth_name:
            col.add_depth(msg, bag_ns)
        elif topic == joint_name:
            col.add_joint_state(msg, bag_ns)
        elif topic == opts.tf_topic:
            col.add_tf(msg, static=False)
        elif topic == opts.tf_static_topic:
            col.add_tf(msg, static=True)
        else:
            col.camera_info = msg
        bar.update()


@dataclass(frozen=True)
class _Source:
    """Where the episode came from: the bag as given, storage, topics, files read and missing."""

    bag: str
    storage: str
    topics: dict[str, TopicReport]
    files: list[str]
    missing_splits: list[str]


@dataclass
class _Matched:
    """The RGB frames kept after matching depth and joint states (``idx`` into the collected)."""

    n: int  # RGB frames collected
    idx: npt.NDArray[np.intp]
    stamps: npt.NDArray[np.int64]  # of the kept frames
    q: npt.NDArray[np.float64]
    dq: npt.NDArray[np.float64]
    depth_dt: npt.NDArray[np.float64]  # of every collected frame (s)
    tolerance_s: float
    velocity_source: str
    dropped: DroppedFrames


@dataclass
class _EePose:
    xyz: npt.NDArray[np.float64]
    rpy: npt.NDArray[np.float64]
    source: str
    fk_fallback: int


def _check_collected(col: FrameCollector, bag: str, opts: ConvertOptions) -> None:
    """Raise one :class:`BagError` naming every topic that gave nothing usable."""
    problems = []
    if len(col.stamps) == 0 or col.rgb is None or col.depth is None:
        problems.append(f'topic {opts.rgb_topic!r}: no RGB frame could be read')
    if col.depth_count == 0:
        problems.append(f'topic {opts.depth_topic!r}: no depth frame could be read')
    if len(col.joints) == 0:
        problems.append(
            f'topic {opts.joint_states_topic!r}: no message has the arm joints '
            f'{list(opts.joint_names)}'
        )
    if problems:
        raise BagError(f'{bag}: ' + '; '.join(problems))


def _match(col: FrameCollector, opts: ConvertOptions) -> _Matched:
    """Keep the frames with a depth frame within tolerance and joint states around them."""
    n = len(col.stamps)
    stamps = np.asarray(col.stamps, dtype=np.int64)
    period = float(np.median(np.diff(stamps))) * 1e-9 if n > 1 else 0.0
    tol = opts.depth_tolerance_s if opts.depth_tolerance_s is not None else 0.5 * period
    depth_dt = col.depth_dt[:n]
    depth_ok = depth_dt <= tol + 1e-12 if n > 1 or opts.depth_tolerance_s else depth_dt < np.inf
    js = col.joints.sample(stamps, round(opts.max_joint_gap_s * 1e9))
    dropped: DroppedFrames = {
        'no_depth': int(np.sum(~depth_ok)),
        'joint_gap': int(np.sum(depth_ok & (js.reason == 'joint_gap'))),
        'no_joint_state': int(np.sum(depth_ok & (js.reason == 'no_joint_state'))),
        'duplicate_stamp': col.duplicates,
        'short_segment': 0,  # set by _segments
    }
    idx = np.flatnonzero(depth_ok & js.valid)
    return _Matched(
        n, idx, stamps[idx], js.q[idx], js.dq[idx], depth_dt, tol, js.velocity_source, dropped
    )


def _compact(col: FrameCollector, idx: npt.NDArray[np.intp]) -> FrameStream | None:
    """
    Move the kept frames to the front of the frame arrays; return the stream if it is the output.

    The streamed file (one only without ``split_on_gap_s``) holds every RGB frame in order: it is
    the output when all of them were kept, and is deleted otherwise.
    """
    assert col.rgb is not None and col.depth is not None
    keep_stream = len(idx) == col.capacity
    if not keep_stream:
        col.depth_to_memory()  # the arrays become the output: frames only in the file come back
    stream = col.end_stream(keep=keep_stream)
    for k, i in enumerate(idx.tolist()):  # in place: k <= i, so nothing is read after overwrite
        if k != i:
            col.rgb[k] = col.rgb[i]
            col.depth[k] = col.depth[i]
    return stream


def _ee_pose(col: FrameCollector, opts: ConvertOptions, m: _Matched) -> _EePose:
    """End-effector pose from TF where the bag has the chain, forward kinematics elsewhere."""
    if not len(m.idx):
        return _EePose(np.zeros((0, 3)), np.zeros((0, 3)), 'fk', 0)
    xyz, rpy = kin.fk(m.q)
    if col.tf.chain(opts.base_frame, opts.ee_frame) is None:
        return _EePose(xyz, rpy, 'fk', 0)
    poses, ok = col.tf.lookup(
        opts.base_frame, opts.ee_frame, m.stamps, round(opts.max_joint_gap_s * 1e9)
    )
    xyz = np.where(ok[:, None], poses[:, :3, 3], xyz)
    rpy = np.where(ok[:, None], kin.matrix_to_rpy(poses[:, :3, :3]), rpy)
    return _EePose(xyz, rpy, 'tf', int(np.sum(~ok)))


def _segments(bag: str, opts: ConvertOptions, m: _Matched) -> list[slice]:
    """Split the kept frames at gaps (if asked); drop segments shorter than ``min_frames``."""
    gap_ns = None if opts.split_on_gap_s is None else round(opts.split_on_gap_s * 1e9)
    segments = split_segments(m.stamps, gap_ns)
    short = [s for s in segments if s.stop - s.start < opts.min_frames]
    segments = [s for s in segments if s.stop - s.start >= opts.min_frames]
    m.dropped['short_segment'] = int(sum(s.stop - s.start for s in short))
    if not segments:
        raise BagError(
            f'{bag}: no episode of at least {opts.min_frames} frames is left after '
            f'synchronisation ({m.n} RGB frames on {opts.rgb_topic!r}, dropped: {m.dropped})'
        )
    return segments


def _report(
    col: FrameCollector,
    opts: ConvertOptions,
    source: _Source,
    m: _Matched,
    ee: _EePose,
    segments: list[slice],
) -> BagReport:
    """Build the bag's report (``source``: the bag, its storage files and the topics report)."""
    assert col.hw is not None
    offsets = m.depth_dt[m.idx]
    return {
        'source': source.bag,
        'storage': source.storage,
        'storage_files': source.files,
        'missing_splits': source.missing_splits,
        'converter_version': __version__,
        'topics': source.topics,
        'stamp_source': opts.stamp,
        'header_stamp_fallbacks': col.stamp_fallbacks,
        'frames': {
            'rgb_messages': m.n + col.duplicates,
            'kept': int(sum(s.stop - s.start for s in segments)),
            'dropped': m.dropped,
        },
        'depth': {
            'messages': col.depth_count,
            'tolerance_s': m.tolerance_s,
            'max_offset_s': float(offsets.max()) if len(offsets) else 0.0,
            'mean_offset_s': float(offsets.mean()) if len(offsets) else 0.0,
        },
        'joints': {
            'names': list(opts.joint_names),
            'messages': len(col.joints),
            'skipped_without_arm_joints': col.joints.skipped_without_arm_joints,
            'velocity_source': m.velocity_source,
            'max_gap_s': opts.max_joint_gap_s,
        },
        'ee_pose': {
            'source': ee.source,
            'base_frame': opts.base_frame,
            'ee_frame': opts.ee_frame,
            'fk_fallback_frames': ee.fk_fallback,
            'tf_frames': col.tf.frames(),
        },
        'image': {
            'rgb_encoding': col.encodings.get('rgb', ''),
            'depth_encoding': col.encodings.get('depth', ''),
            'native_hw': list(col.native_hw or ()),
            'depth_native_hw': list(col.depth_native_hw or ()),
            'output_hw': list(col.hw),
        },
        'camera_info': _camera(col)[2],
        'time': time_span(m.stamps[slice(segments[0].start, segments[-1].stop)]),
        'options': options_report(opts),
    }


def _write_segments(
    col: FrameCollector,
    opts: ConvertOptions,
    paths: list[Path],
    segments: list[slice],
    episode: tuple[_Matched, _EePose, FrameStream | None],
    report: BagReport,
) -> list[Path]:
    """Validate and write every segment's npz (atomically) and its JSON report."""
    assert col.rgb is not None and col.depth is not None and col.hw is not None
    m, ee, stream = episode
    k_mat, d_vec, _ = _camera(col)
    continuous = np.asarray(kin.CONTINUOUS, dtype=bool)
    written: list[Path] = []
    for seg, path in zip(segments, paths):
        data = Episode(
            stamp_ns=m.stamps[seg],
            rgb=col.rgb[seg],
            depth=col.depth[seg],
            q=rebase_continuous(m.q[seg], continuous),
            dq=m.dq[seg],
            ee_xyz=ee.xyz[seg],
            ee_rpy=ee.rpy[seg],
            joint_names=tuple(opts.joint_names),
            camera_K=k_mat,
            camera_D=d_vec,
            camera_width=int(col.hw[1]),
            camera_height=int(col.hw[0]),
        )
        seg_report: BagReport = {
            **report,
            'output': path.name,
            'segment': {
                'index': len(written),
                'of': len(segments),
                'frames': seg.stop - seg.start,
                **time_span(m.stamps[seg]),
            },
        }
        written.append(
            save_episode(
                path, data, compress=opts.compress, overwrite=opts.overwrite, stream=stream
            )
        )
        write_report(path.with_suffix('.json'), seg_report, overwrite=opts.overwrite)
    return written


def _remove_stale(out: Path, stem: str, written: list[Path]) -> None:
    """Delete earlier outputs of the bag that this conversion did not write (``--overwrite``)."""
    keep_names = {p.name for p in written} | {p.with_suffix('.json').name for p in written}
    for stale in _existing_outputs(out, stem):
        if stale.name not in keep_names:
            stale.unlink()


def _finish(
    col: FrameCollector, out: Path, stem: str, opts: ConvertOptions, source: _Source
) -> tuple[list[Path], BagReport]:
    """End of the bag: drop unmatched frames, segment, write every segment and its report."""
    bag = source.bag
    col.settle_pending()
    _check_collected(col, bag, opts)
    matched = _match(col, opts)
    stream = _compact(col, matched.idx)
    ee = _ee_pose(col, opts, matched)
    segments = _segments(bag, opts, matched)
    report = _report(col, opts, source, matched, ee, segments)
    n_segments = None if opts.split_on_gap_s is None else len(segments)
    paths = output_paths(out, stem, n_segments)
    written = _write_segments(col, opts, paths, segments, (matched, ee, stream), report)
    if opts.overwrite:
        _remove_stale(out, stem, written)
    report['outputs'] = [p.name for p in written]
    return written, report
