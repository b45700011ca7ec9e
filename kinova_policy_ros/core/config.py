"""
The one configuration system: a dataclass per component, validated in ``__post_init__``.

``ExperimentConfig`` groups ``data``, ``model`` and ``train`` (with ``train.ema`` and
``train.augment``). It loads from YAML, takes dotted command-line overrides whose values are
parsed as YAML (``train.num_steps=20``, ``data.resize_hw=[96,128]``) and rejects unknown keys and
bad values with a :class:`ConfigError` naming the dotted key and the value.

This module holds the data and model dataclasses and the experiment; the training section is
:mod:`~kinova_policy_ros.core.config_train`, the shared checks and size bounds
:mod:`~kinova_policy_ros.core.config_checks`, reading the YAML file and the overrides
:mod:`~kinova_policy_ros.core.config_yaml`, the typed conversion to and from plain values
:mod:`~kinova_policy_ros.core.config_codec`. Every public name is importable from here.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
import math
import os

from kinova_policy_ros.core.config_checks import (
    at_most,
    MAX_IMAGE_SIDE,
    MAX_JOINTS,
    MAX_LAYERS,
    MAX_STEPS,
    MAX_WIDTH,
    require,
)
from kinova_policy_ros.core.config_codec import from_dict, PlainValue, to_dict
from kinova_policy_ros.core.config_train import (
    AugmentConfig,
    EMAConfig,
    LR_SCHEDULERS,
    TrainConfig,
)
from kinova_policy_ros.core.config_yaml import apply_overrides, parse_override, read_yaml_mapping
from kinova_policy_ros.core.errors import ConfigError

__all__ = [
    'FITS',
    'LR_SCHEDULERS',
    'AugmentConfig',
    'DataConfig',
    'EMAConfig',
    'ExperimentConfig',
    'ModelConfig',
    'PlainValue',
    'TrainConfig',
    'apply_overrides',
    'from_dict',
    'load_experiment_config',
    'parse_override',
    'to_dict',
]

#: How each camera stream is fitted to ``data.resize_hw`` (docs/data.md, "Geometry"):
#: ``center_crop`` crops the largest centred box of the model's aspect ratio (after
#: ``data.crop``), ``stretch`` resizes the whole box whatever its aspect (checkpoints written
#: before this field existed).
FITS = ('center_crop', 'stretch')


@dataclass
class DataConfig:
    """How episodes become samples (docs/data.md)."""

    resize_hw: tuple[int, int] = (96, 128)
    # Region of the camera image the model sees, before the resize: (top, left, height, width)
    # as fractions of the image, so it holds at any camera resolution; null = the whole image.
    # With a fixed camera, cropping to the workspace gives the model more pixels per cm.
    crop: tuple[float, float, float, float] | None = None
    # How each stream (colour and depth, each at its own size) becomes resize_hw: 'center_crop'
    # (the largest centred box of the model's aspect ratio, then the resize) or 'stretch'.
    fit: str = 'center_crop'
    max_depth_m: float = 2.0
    normalize_depth01: bool = True
    max_episode_length: int | None = None
    obs_horizon: int = 8
    # Prepend the episode's first observation to every window, so the model sees 1 + obs_horizon
    # frames: a view of the scene from before the arm moved (of a target the arm later hides
    # from the camera, say). At run time it is the first observation after a reset.
    anchor_frame: bool = False
    pred_horizon: int = 12
    action_horizon: int = 6
    val_fraction: float = 0.1

    def __post_init__(self) -> None:
        self.resize_hw = tuple(self.resize_hw)  # type: ignore[assignment]
        require(
            len(self.resize_hw) == 2 and all(int(v) >= 8 for v in self.resize_hw),
            'data.resize_hw',
            self.resize_hw,
            'must be [H, W] with H, W >= 8',
        )
        require(
            all(int(v) <= MAX_IMAGE_SIDE for v in self.resize_hw),
            'data.resize_hw',
            self.resize_hw,
            f'must be [H, W] with H, W <= {MAX_IMAGE_SIDE}',
        )
        if self.crop is not None:
            crop = tuple(float(v) for v in self.crop)
            self.crop = crop  # type: ignore[assignment]
            ok = len(crop) == 4
            if ok:
                top, left, height, width = crop
                ok = (
                    0.0 <= top < 1.0
                    and 0.0 <= left < 1.0
                    and height > 0.0
                    and width > 0.0
                    and top + height <= 1.0 + 1e-9
                    and left + width <= 1.0 + 1e-9
                )
            require(
                ok,
                'data.crop',
                self.crop,
                'must be null or [top, left, height, width], fractions of the image with '
                'top + height <= 1 and left + width <= 1',
            )
        require(self.fit in FITS, 'data.fit', self.fit, f'must be one of {list(FITS)}')
        require(
            self.max_depth_m > 0 and math.isfinite(self.max_depth_m),
            'data.max_depth_m',
            self.max_depth_m,
            'must be > 0 and finite',
        )
        require(
            self.max_episode_length is None or self.max_episode_length >= 1,
            'data.max_episode_length',
            self.max_episode_length,
            'must be null or >= 1',
        )
        require(self.obs_horizon >= 1, 'data.obs_horizon', self.obs_horizon, 'must be >= 1')
        require(
            isinstance(self.anchor_frame, bool),
            'data.anchor_frame',
            self.anchor_frame,
            'must be true or false',
        )
        require(self.pred_horizon >= 1, 'data.pred_horizon', self.pred_horizon, 'must be >= 1')
        at_most(self, 'data', ('obs_horizon', 'pred_horizon'), MAX_STEPS)
        require(
            1 <= self.action_horizon <= self.pred_horizon,
            'data.action_horizon',
            self.action_horizon,
            f'must be in 1..pred_horizon ({self.pred_horizon})',
        )
        require(
            0.0 <= self.val_fraction < 1.0,
            'data.val_fraction',
            self.val_fraction,
            'must be in [0, 1)',
        )


@dataclass
class ModelConfig:
    """Sizes of ``TransformerJointGripperNoDQ`` (docs/model.md)."""

    d_model: int = 128
    nhead: int = 4
    num_encoder_layers: int = 2
    num_decoder_layers: int = 2
    dim_feedforward: int = 512
    dropout: float = 0.1
    img_feat_dim: int = 64
    q_feat_dim: int = 32
    conv_channels: tuple[int, ...] = (32, 64, 128)
    #: 'avg' (global average pooling, the seed design) or 'spatial_softmax' (keypoints).
    image_pool: str = 'avg'
    #: 'none' (the seed design) or 'group' (GroupNorm after each conv: finds small objects
    #: much sooner in training).
    conv_norm: str = 'none'
    #: Initial inverse temperature of the spatial softmax (``image_pool: spatial_softmax``).
    keypoint_beta: float = 1.0
    max_pred_horizon: int = 32
    num_joints: int = 7
    #: Predict each target as a change from the newest observed joint positions (the output is
    #: still absolute normalized joints in [-1, 1]); False = the seed design.
    residual: bool = False
    #: Pre-LayerNorm transformer layers (``norm_first``); False = PyTorch's default post-norm.
    norm_first: bool = False
    #: Add the goal head (a training aid for ``train.aux_goal_weight``; unused online).
    goal_head: bool = False
    #: What the head predicts: 'joint' (joint targets, the seed design) or 'task' (per step an
    #: end-effector displacement [6] and a null-space motion [7], turned into joint targets
    #: through the damped Jacobian of the newest joints; the output stays joint targets).
    action_space: str = 'joint'
    #: The point the task-space head moves and the goal head locates: ``tcp_offset`` metres
    #: along the z axis of ``end_effector_link`` (0 = its origin, the seed design; the tool
    #: centre point between the Robotiq 2F-85's fingertips: 0.1086).
    tcp_offset: float = 0.0

    def __post_init__(self) -> None:
        self.conv_channels = tuple(self.conv_channels)
        require(
            0.0 <= self.tcp_offset <= 0.5,
            'model.tcp_offset',
            self.tcp_offset,
            'must be in [0, 0.5] m',
        )
        for key in ('d_model', 'nhead', 'dim_feedforward', 'img_feat_dim', 'q_feat_dim'):
            require(getattr(self, key) >= 1, f'model.{key}', getattr(self, key), 'must be >= 1')
        require(
            self.d_model % self.nhead == 0,
            'model.d_model',
            self.d_model,
            f'must be divisible by model.nhead ({self.nhead})',
        )
        for key in ('num_encoder_layers', 'num_decoder_layers'):
            require(getattr(self, key) >= 1, f'model.{key}', getattr(self, key), 'must be >= 1')
        require(0.0 <= self.dropout < 1.0, 'model.dropout', self.dropout, 'must be in [0, 1)')
        require(
            len(self.conv_channels) >= 1 and all(c >= 1 for c in self.conv_channels),
            'model.conv_channels',
            self.conv_channels,
            'must be a non-empty list of positive ints',
        )
        require(
            self.image_pool in ('avg', 'spatial_softmax'),
            'model.image_pool',
            self.image_pool,
            "must be 'avg' or 'spatial_softmax'",
        )
        require(
            self.keypoint_beta > 0 and math.isfinite(self.keypoint_beta),
            'model.keypoint_beta',
            self.keypoint_beta,
            'must be > 0 and finite',
        )
        require(
            self.conv_norm in ('none', 'group'),
            'model.conv_norm',
            self.conv_norm,
            "must be 'none' or 'group'",
        )
        require(
            self.max_pred_horizon >= 1, 'model.max_pred_horizon', self.max_pred_horizon, '>= 1'
        )
        require(self.num_joints >= 1, 'model.num_joints', self.num_joints, 'must be >= 1')
        require(
            self.action_space in ('joint', 'task'),
            'model.action_space',
            self.action_space,
            "must be 'joint' or 'task'",
        )
        if self.action_space == 'task':
            require(
                self.num_joints == 7,
                'model.num_joints',
                self.num_joints,
                'must be 7 with model.action_space=task (the Gen3 kinematics)',
            )
            require(
                not self.residual,
                'model.residual',
                self.residual,
                'must be false with model.action_space=task (its targets are already a change '
                'from the newest joints)',
            )
        widths = ('d_model', 'dim_feedforward', 'img_feat_dim', 'q_feat_dim')
        at_most(self, 'model', widths, MAX_WIDTH)
        at_most(self, 'model', ('num_encoder_layers', 'num_decoder_layers'), MAX_LAYERS)
        at_most(self, 'model', ('max_pred_horizon',), MAX_STEPS)
        at_most(self, 'model', ('num_joints',), MAX_JOINTS)
        require(
            len(self.conv_channels) <= MAX_LAYERS
            and all(c <= MAX_WIDTH for c in self.conv_channels),
            'model.conv_channels',
            self.conv_channels,
            f'must be at most {MAX_LAYERS} channel counts, each <= {MAX_WIDTH}',
        )


@dataclass
class ExperimentConfig:
    """Everything the trainer needs; ``data`` and ``model`` also travel with the checkpoint."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def load_experiment_config(
    path: str | os.PathLike[str] | None = None, overrides: Sequence[str] = ()
) -> ExperimentConfig:
    """Load an :class:`ExperimentConfig` from YAML (or defaults) plus dotted overrides."""
    values = read_yaml_mapping(path) if path is not None else {}
    values = apply_overrides(values, overrides)
    try:
        return from_dict(ExperimentConfig, values)
    except ConfigError as err:
        where = f'{path}: ' if path is not None else ''
        raise ConfigError(f'{where}{err}') from err
