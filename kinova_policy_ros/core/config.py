"""
The one configuration system: a dataclass per component, validated in ``__post_init__``.

``ExperimentConfig`` groups ``data``, ``model`` and ``train`` (with ``train.ema`` and
``train.augment``). It loads from YAML, takes dotted command-line overrides whose values are
parsed as YAML (``train.num_steps=20``, ``data.resize_hw=[96,128]``) and rejects unknown keys and
bad values with a :class:`ConfigError` naming the dotted key and the value.

This module holds the dataclasses and their checks; reading the YAML file and the overrides is
:mod:`~kinova_policy_ros.core.config_yaml`, the typed conversion to and from plain values
:mod:`~kinova_policy_ros.core.config_codec`. Every public name is importable from here.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
import math
import os

from kinova_policy_ros.core.config_codec import from_dict, PlainValue, to_dict
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

LR_SCHEDULERS = (
    'linear',
    'cosine',
    'cosine_with_restarts',
    'polynomial',
    'constant',
    'constant_with_warmup',
    'piecewise_constant',
)


#: Upper bounds of the sizes a config may ask for: far above any model this package trains,
#: low enough that a hostile ``config.json`` (``d_model: 1000000000``) is refused by name before
#: anything is allocated. The weights file bounds the whole model (policy.checkpoint).
MAX_WIDTH = 8192  # d_model, dim_feedforward, feature sizes, conv channels
MAX_LAYERS = 64  # transformer layers of each stack, conv layers
MAX_STEPS = 4096  # horizons (frames)
MAX_JOINTS = 64
MAX_IMAGE_SIDE = 4096  # data.resize_hw


def _require(ok: bool, key: str, value: object, what: str) -> None:
    if not ok:
        raise ConfigError(f'{key}: {what}, got {value!r}')


def _at_most(cfg: object, section: str, keys: tuple[str, ...], bound: int) -> None:
    for key in keys:
        value = getattr(cfg, key)
        _require(value <= bound, f'{section}.{key}', value, f'must be <= {bound}')


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
        _require(
            len(self.resize_hw) == 2 and all(int(v) >= 8 for v in self.resize_hw),
            'data.resize_hw',
            self.resize_hw,
            'must be [H, W] with H, W >= 8',
        )
        _require(
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
            _require(
                ok,
                'data.crop',
                self.crop,
                'must be null or [top, left, height, width], fractions of the image with '
                'top + height <= 1 and left + width <= 1',
            )
        _require(self.fit in FITS, 'data.fit', self.fit, f'must be one of {list(FITS)}')
        _require(
            self.max_depth_m > 0 and math.isfinite(self.max_depth_m),
            'data.max_depth_m',
            self.max_depth_m,
            'must be > 0 and finite',
        )
        _require(
            self.max_episode_length is None or self.max_episode_length >= 1,
            'data.max_episode_length',
            self.max_episode_length,
            'must be null or >= 1',
        )
        _require(self.obs_horizon >= 1, 'data.obs_horizon', self.obs_horizon, 'must be >= 1')
        _require(
            isinstance(self.anchor_frame, bool),
            'data.anchor_frame',
            self.anchor_frame,
            'must be true or false',
        )
        _require(self.pred_horizon >= 1, 'data.pred_horizon', self.pred_horizon, 'must be >= 1')
        _at_most(self, 'data', ('obs_horizon', 'pred_horizon'), MAX_STEPS)
        _require(
            1 <= self.action_horizon <= self.pred_horizon,
            'data.action_horizon',
            self.action_horizon,
            f'must be in 1..pred_horizon ({self.pred_horizon})',
        )
        _require(
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

    def __post_init__(self) -> None:
        self.conv_channels = tuple(self.conv_channels)
        for key in ('d_model', 'nhead', 'dim_feedforward', 'img_feat_dim', 'q_feat_dim'):
            _require(getattr(self, key) >= 1, f'model.{key}', getattr(self, key), 'must be >= 1')
        _require(
            self.d_model % self.nhead == 0,
            'model.d_model',
            self.d_model,
            f'must be divisible by model.nhead ({self.nhead})',
        )
        for key in ('num_encoder_layers', 'num_decoder_layers'):
            _require(getattr(self, key) >= 1, f'model.{key}', getattr(self, key), 'must be >= 1')
        _require(0.0 <= self.dropout < 1.0, 'model.dropout', self.dropout, 'must be in [0, 1)')
        _require(
            len(self.conv_channels) >= 1 and all(c >= 1 for c in self.conv_channels),
            'model.conv_channels',
            self.conv_channels,
            'must be a non-empty list of positive ints',
        )
        _require(
            self.image_pool in ('avg', 'spatial_softmax'),
            'model.image_pool',
            self.image_pool,
            "must be 'avg' or 'spatial_softmax'",
        )
        _require(
            self.keypoint_beta > 0 and math.isfinite(self.keypoint_beta),
            'model.keypoint_beta',
            self.keypoint_beta,
            'must be > 0 and finite',
        )
        _require(
            self.conv_norm in ('none', 'group'),
            'model.conv_norm',
            self.conv_norm,
            "must be 'none' or 'group'",
        )
        _require(
            self.max_pred_horizon >= 1, 'model.max_pred_horizon', self.max_pred_horizon, '>= 1'
        )
        _require(self.num_joints >= 1, 'model.num_joints', self.num_joints, 'must be >= 1')
        _require(
            self.action_space in ('joint', 'task'),
            'model.action_space',
            self.action_space,
            "must be 'joint' or 'task'",
        )
        if self.action_space == 'task':
            _require(
                self.num_joints == 7,
                'model.num_joints',
                self.num_joints,
                'must be 7 with model.action_space=task (the Gen3 kinematics)',
            )
            _require(
                not self.residual,
                'model.residual',
                self.residual,
                'must be false with model.action_space=task (its targets are already a change '
                'from the newest joints)',
            )
        widths = ('d_model', 'dim_feedforward', 'img_feat_dim', 'q_feat_dim')
        _at_most(self, 'model', widths, MAX_WIDTH)
        _at_most(self, 'model', ('num_encoder_layers', 'num_decoder_layers'), MAX_LAYERS)
        _at_most(self, 'model', ('max_pred_horizon',), MAX_STEPS)
        _at_most(self, 'model', ('num_joints',), MAX_JOINTS)
        _require(
            len(self.conv_channels) <= MAX_LAYERS
            and all(c <= MAX_WIDTH for c in self.conv_channels),
            'model.conv_channels',
            self.conv_channels,
            f'must be at most {MAX_LAYERS} channel counts, each <= {MAX_WIDTH}',
        )


@dataclass
class EMAConfig:
    """Arguments of ``diffusers.training_utils.EMAModel``."""

    decay: float = 0.9999
    min_decay: float = 0.0
    update_after_step: int = 0
    use_ema_warmup: bool = True
    inv_gamma: float = 1.0
    power: float = 0.75
    foreach: bool = False

    def __post_init__(self) -> None:
        _require(0.0 <= self.decay <= 1.0, 'train.ema.decay', self.decay, 'must be in [0, 1]')
        _require(
            0.0 <= self.min_decay <= self.decay,
            'train.ema.min_decay',
            self.min_decay,
            'must be in [0, decay]',
        )
        _require(
            self.update_after_step >= 0,
            'train.ema.update_after_step',
            self.update_after_step,
            'must be >= 0',
        )
        _require(self.inv_gamma > 0, 'train.ema.inv_gamma', self.inv_gamma, 'must be > 0')
        _require(self.power > 0, 'train.ema.power', self.power, 'must be > 0')


@dataclass
class AugmentConfig:
    """
    Training-only measures against copying the joint history and overfitting.

    All default to off (the seed recipe). Noise is in normalized joint units ([-1, 1] range).
    """

    image_shift_px: int = 0
    color_jitter: float = 0.0
    q_noise_std: float = 0.0
    q_history_dropout: float = 0.0
    #: Gaussian noise on the normalized depth images (std, normalized depth units).
    depth_noise_std: float = 0.0
    #: Probability of each depth pixel reading 0 ("no return", as a real depth camera's holes).
    depth_dropout: float = 0.0

    def __post_init__(self) -> None:
        _require(
            self.image_shift_px >= 0,
            'train.augment.image_shift_px',
            self.image_shift_px,
            'must be >= 0',
        )
        _require(
            0.0 <= self.color_jitter < 1.0,
            'train.augment.color_jitter',
            self.color_jitter,
            'must be in [0, 1)',
        )
        _require(
            self.q_noise_std >= 0,
            'train.augment.q_noise_std',
            self.q_noise_std,
            'must be >= 0',
        )
        _require(
            0.0 <= self.q_history_dropout <= 1.0,
            'train.augment.q_history_dropout',
            self.q_history_dropout,
            'must be in [0, 1]',
        )
        _require(
            self.depth_noise_std >= 0 and math.isfinite(self.depth_noise_std),
            'train.augment.depth_noise_std',
            self.depth_noise_std,
            'must be >= 0 and finite',
        )
        _require(
            0.0 <= self.depth_dropout < 1.0,
            'train.augment.depth_dropout',
            self.depth_dropout,
            'must be in [0, 1)',
        )

    @property
    def enabled(self) -> bool:
        return bool(
            self.image_shift_px
            or self.color_jitter
            or self.q_noise_std
            or self.q_history_dropout
            or self.depth_noise_std
            or self.depth_dropout
        )


@dataclass
class TrainConfig:
    """Optimizer, learning-rate schedule (diffusers), EMA and loop settings."""

    batch_size: int = 64
    num_steps: int = 2000
    lr: float = 3.0e-4
    weight_decay: float = 1.0e-4
    lr_scheduler: str = 'cosine'
    lr_warmup_steps: int = 100
    #: ``cosine_with_restarts``: number of hard restarts.
    lr_num_cycles: int = 1
    #: ``polynomial``: power of the decay.
    lr_power: float = 1.0
    #: ``piecewise_constant``: rules like ``'1:10,0.1:20,0.01:30,0.005'``.
    lr_step_rules: str | None = None
    grad_clip: float = 1.0
    seed: int = 0
    device: str = 'auto'
    num_workers: int = 0
    val_every: int = 200
    checkpoint_every: int = 500
    log_every: int = 10
    #: Sample episode starts (t < obs_horizon) this many times more often (1 = uniform).
    start_oversample: float = 1.0
    #: Windows per segment: S consecutive samples share their K+S-1 frame encodings (1 = every
    #: sample independent, the seed recipe). About (K*S)/(K+S-1) times fewer image encodings.
    windows_per_segment: int = 1
    #: Weight of the auxiliary loss "where does the end effector end this episode" (from the
    #: episode's last ee_xyz; needs model.goal_head). 0 = off, the seed recipe.
    aux_goal_weight: float = 0.0
    #: Weight of horizon step t in the joint loss ∝ horizon_decay**t (mean 1): < 1 stresses the
    #: first steps, which the node executes; 1 = every step alike, the seed recipe.
    horizon_decay: float = 1.0
    #: Keep freed memory in the process's heap (glibc): no page faults for each step's
    #: activations (core/allocator.py). false = the C library's default behaviour.
    keep_freed_memory: bool = True
    ema: EMAConfig = field(default_factory=EMAConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        for key in ('batch_size', 'num_steps', 'val_every', 'checkpoint_every', 'log_every'):
            _require(getattr(self, key) >= 1, f'train.{key}', getattr(self, key), 'must be >= 1')
        _require(self.lr > 0, 'train.lr', self.lr, 'must be > 0')
        _require(self.weight_decay >= 0, 'train.weight_decay', self.weight_decay, 'must be >= 0')
        _require(
            self.lr_scheduler in LR_SCHEDULERS,
            'train.lr_scheduler',
            self.lr_scheduler,
            f'must be one of {", ".join(LR_SCHEDULERS)}',
        )
        _require(
            self.lr_warmup_steps >= 0,
            'train.lr_warmup_steps',
            self.lr_warmup_steps,
            'must be >= 0',
        )
        _require(self.lr_num_cycles >= 1, 'train.lr_num_cycles', self.lr_num_cycles, '>= 1')
        _require(self.lr_power > 0, 'train.lr_power', self.lr_power, 'must be > 0')
        if self.lr_scheduler == 'piecewise_constant':
            _require(
                bool(self.lr_step_rules),
                'train.lr_step_rules',
                self.lr_step_rules,
                'is required by lr_scheduler piecewise_constant',
            )
        if self.lr_step_rules is not None:
            _check_step_rules(self.lr_step_rules)
        _require(self.grad_clip >= 0, 'train.grad_clip', self.grad_clip, 'must be >= 0 (0 = off)')
        _require(
            self.device == 'auto' or self.device == 'cpu' or self.device.startswith('cuda'),
            'train.device',
            self.device,
            "must be 'auto', 'cpu' or 'cuda[:N]'",
        )
        _require(self.num_workers >= 0, 'train.num_workers', self.num_workers, 'must be >= 0')
        _require(
            self.windows_per_segment >= 1 and self.batch_size % self.windows_per_segment == 0,
            'train.windows_per_segment',
            self.windows_per_segment,
            f'must be >= 1 and divide train.batch_size ({self.batch_size})',
        )
        _require(
            self.aux_goal_weight >= 0, 'train.aux_goal_weight', self.aux_goal_weight, '>= 0'
        )
        _require(
            0.0 < self.horizon_decay <= 1.0,
            'train.horizon_decay',
            self.horizon_decay,
            'must be in (0, 1]',
        )
        _require(
            self.start_oversample >= 1.0,
            'train.start_oversample',
            self.start_oversample,
            'must be >= 1',
        )


def _check_step_rules(rules: str) -> None:
    """Check the diffusers piecewise_constant syntax ``'mult:step,mult:step,...,mult'``."""
    parts = rules.split(',')
    try:
        for part in parts[:-1]:
            mult, step = part.split(':')
            float(mult)
            int(step)
        float(parts[-1])
    except ValueError as err:
        raise ConfigError(
            f"train.lr_step_rules: expected 'mult:step,...,mult_last', got {rules!r}"
        ) from err


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
