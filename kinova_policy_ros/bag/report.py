"""
The JSON report written next to every converted episode (one ``.json`` per ``.npz``).

The report's shape is spelled out as :class:`typing.TypedDict` s (:class:`BagReport` and its
parts) so that the converter, the command line's summary table and the tests agree on it;
:func:`time_span` and :func:`topics_report` compute two of its parts and :func:`write_report`
writes it atomically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import json
from pathlib import Path
from typing import Protocol, TypedDict

from kinova_policy_ros.bag.options import ConvertOptions
from kinova_policy_ros.core.errors import BagError
from kinova_policy_ros.data.schema import atomic_write
import numpy as np
import numpy.typing as npt

__all__ = [
    'BagReport',
    'CameraInfoReport',
    'DepthReport',
    'DroppedFrames',
    'EePoseReport',
    'FramesReport',
    'ImageReport',
    'JointsReport',
    'SegmentReport',
    'TimeSpan',
    'TopicReport',
    'dropped_total',
    'options_report',
    'time_span',
    'topics_report',
    'write_report',
]

OptionValue = str | int | float | bool | list[str] | list[int] | None


class TopicInfo(Protocol):
    """What the report reads of a bag topic (``reader.TopicSummary``)."""

    @property
    def msgtype(self) -> str: ...

    @property
    def count(self) -> int: ...


#: One topic role: the topic read for it, its type and message count (functional syntax: the
#: JSON key ``type`` is not a class attribute then).
TopicReport = TypedDict(  # noqa: UP013
    'TopicReport', {'name': str, 'type': 'str | None', 'messages': int, 'used': bool}
)


class DroppedFrames(TypedDict):
    """RGB frames not in any output, by reason (``short_segment`` set once segments are known)."""

    no_depth: int
    joint_gap: int
    no_joint_state: int
    duplicate_stamp: int
    short_segment: int


class FramesReport(TypedDict):
    """RGB messages read, frames kept and dropped."""

    rgb_messages: int
    kept: int
    dropped: DroppedFrames


class DepthReport(TypedDict):
    """Depth matching: messages, tolerance and the offsets of the kept frames."""

    messages: int
    tolerance_s: float
    max_offset_s: float
    mean_offset_s: float


class JointsReport(TypedDict):
    """Joint states: names, messages, skipped messages, velocity source and gap limit."""

    names: list[str]
    messages: int
    skipped_without_arm_joints: int
    velocity_source: str
    max_gap_s: float


class EePoseReport(TypedDict):
    """Where the end-effector pose came from (``tf`` or ``fk``)."""

    source: str
    base_frame: str
    ee_frame: str
    fk_fallback_frames: int
    tf_frames: list[str]


class ImageReport(TypedDict):
    """Encodings and sizes of the images."""

    rgb_encoding: str
    depth_encoding: str
    native_hw: list[int]
    depth_native_hw: list[int]
    output_hw: list[int]


class CameraInfoReport(TypedDict, total=False):
    """The CameraInfo used for the intrinsics (only ``present`` when the bag has none)."""

    present: bool
    width: int
    height: int
    distortion_model: str
    k_scale_xy: list[float]
    crop_box: list[int]  # (top, left, height, width) of the frames kept, in frame pixels


class TimeSpan(TypedDict):
    """First and last stamp, duration and median rate of a stamp sequence."""

    start_ns: int
    end_ns: int
    duration_s: float
    rate_hz: float


class SegmentReport(TimeSpan):
    """Which segment of the bag an output file holds."""

    index: int
    of: int
    frames: int


class _BagReportBase(TypedDict):
    source: str
    storage: str
    storage_files: list[str]
    missing_splits: list[str]
    converter_version: str
    topics: dict[str, TopicReport]
    stamp_source: str
    header_stamp_fallbacks: dict[str, int]
    frames: FramesReport
    depth: DepthReport
    joints: JointsReport
    ee_pose: EePoseReport
    image: ImageReport
    camera_info: CameraInfoReport
    time: TimeSpan
    options: dict[str, OptionValue]


class BagReport(_BagReportBase, total=False):
    """
    The report of a bag.

    ``output`` and ``segment`` are set in each episode's JSON file, ``outputs`` (every file
    written) in the report :func:`~kinova_policy_ros.bag.convert.convert_bag` returns.
    """

    output: str
    segment: SegmentReport
    outputs: list[str]


def dropped_total(dropped: DroppedFrames) -> int:
    """Return the number of RGB frames dropped for any reason."""
    return (
        dropped['no_depth']
        + dropped['joint_gap']
        + dropped['no_joint_state']
        + dropped['duplicate_stamp']
        + dropped['short_segment']
    )


def time_span(stamps: npt.NDArray[np.int64]) -> TimeSpan:
    """Return the span of ``stamps`` (ns): zeros for no stamp, rate 0 for a single one."""
    n = len(stamps)
    duration = (int(stamps[-1]) - int(stamps[0])) * 1e-9 if n else 0.0
    dt = float(np.median(np.diff(stamps))) * 1e-9 if n > 1 else 0.0
    return {
        'start_ns': int(stamps[0]) if n else 0,
        'end_ns': int(stamps[-1]) if n else 0,
        'duration_s': duration,
        'rate_hz': 1.0 / dt if dt > 0 else 0.0,
    }


def topics_report(
    topics: Mapping[str, TopicInfo], read: Sequence[str], opts: ConvertOptions
) -> dict[str, TopicReport]:
    """Return, per topic role, the configured topic, its type, count and whether it was read."""
    roles = {
        'rgb': opts.rgb_topic,
        'depth': opts.depth_topic,
        'joint_states': opts.joint_states_topic,
        'camera_info': opts.camera_info_topic,
        'tf': opts.tf_topic,
        'tf_static': opts.tf_static_topic,
    }
    out: dict[str, TopicReport] = {}
    for role, name in roles.items():
        t = topics.get(name)
        out[role] = {
            'name': name,
            'type': t.msgtype if t else None,
            'messages': t.count if t else 0,
            'used': name in read,
        }
    return out


def options_report(opts: ConvertOptions) -> dict[str, OptionValue]:
    """Return the options that shape the output (tuples as lists, as JSON has them)."""
    out: dict[str, OptionValue] = {}
    for key in ConvertOptions.__dataclass_fields__:
        if key in ('workers', 'progress', 'overwrite'):
            continue
        value = getattr(opts, key)
        out[key] = list(value) if isinstance(value, tuple) else value
    return out


def write_report(path: Path, report: BagReport, *, overwrite: bool) -> None:
    """Write ``report`` as indented JSON, atomically; :class:`BagError` naming ``path``."""
    text = json.dumps(report, indent=2) + '\n'
    try:
        atomic_write(path, lambda tmp: tmp.write_text(text), overwrite=overwrite)
    except OSError as err:
        raise BagError(f'{path}: cannot write report: {err}') from err
