"""The converter's options (one frozen dataclass, the defaults of ``config/bag_to_npz.yaml``)."""

from dataclasses import dataclass
from typing import Literal

from kinova_policy_ros.core import kinematics as kin

__all__ = ['ConvertOptions']


@dataclass(frozen=True)
class ConvertOptions:
    """Converter options; the defaults are those of ``config/bag_to_npz.yaml``."""

    rgb_topic: str = '/camera/color/image_raw'
    depth_topic: str = '/camera/depth/image_raw'
    joint_states_topic: str = '/joint_states'
    camera_info_topic: str = '/camera/color/camera_info'
    tf_topic: str = '/tf'
    tf_static_topic: str = '/tf_static'
    joint_names: tuple[str, ...] = kin.JOINT_NAMES
    base_frame: str = 'base_link'
    ee_frame: str = 'end_effector_link'
    resize: tuple[int, int] | None = None
    depth_tolerance_s: float | None = None
    max_joint_gap_s: float = 0.1
    stamp: Literal['header', 'bag'] = 'header'
    split_on_gap_s: float | None = None
    min_frames: int = 2
    workers: int = 1
    overwrite: bool = False
    allow_missing_camera_info: bool = False
    allow_partial_split: bool = False
    compress: bool = True
    progress: bool = True
