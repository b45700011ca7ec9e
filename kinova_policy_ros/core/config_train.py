"""
The training section of the configuration: optimizer, schedule, EMA and training measures.

``TrainConfig`` (``train``) with ``EMAConfig`` (``train.ema``) and ``AugmentConfig``
(``train.augment``); like every section, a dataclass validated in ``__post_init__``. Import
these from :mod:`kinova_policy_ros.core.config`, the one configuration system.
"""

from dataclasses import dataclass, field
import math

from kinova_policy_ros.core.config_checks import require
from kinova_policy_ros.core.errors import ConfigError

LR_SCHEDULERS = (
    'linear',
    'cosine',
    'cosine_with_restarts',
    'polynomial',
    'constant',
    'constant_with_warmup',
    'piecewise_constant',
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
        require(0.0 <= self.decay <= 1.0, 'train.ema.decay', self.decay, 'must be in [0, 1]')
        require(
            0.0 <= self.min_decay <= self.decay,
            'train.ema.min_decay',
            self.min_decay,
            'must be in [0, decay]',
        )
        require(
            self.update_after_step >= 0,
            'train.ema.update_after_step',
            self.update_after_step,
            'must be >= 0',
        )
        require(self.inv_gamma > 0, 'train.ema.inv_gamma', self.inv_gamma, 'must be > 0')
        require(self.power > 0, 'train.ema.power', self.power, 'must be > 0')


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
        require(
            self.image_shift_px >= 0,
            'train.augment.image_shift_px',
            self.image_shift_px,
            'must be >= 0',
        )
        require(
            0.0 <= self.color_jitter < 1.0,
            'train.augment.color_jitter',
            self.color_jitter,
            'must be in [0, 1)',
        )
        require(
            self.q_noise_std >= 0,
            'train.augment.q_noise_std',
            self.q_noise_std,
            'must be >= 0',
        )
        require(
            0.0 <= self.q_history_dropout <= 1.0,
            'train.augment.q_history_dropout',
            self.q_history_dropout,
            'must be in [0, 1]',
        )
        require(
            self.depth_noise_std >= 0 and math.isfinite(self.depth_noise_std),
            'train.augment.depth_noise_std',
            self.depth_noise_std,
            'must be >= 0 and finite',
        )
        require(
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
            require(getattr(self, key) >= 1, f'train.{key}', getattr(self, key), 'must be >= 1')
        require(self.lr > 0, 'train.lr', self.lr, 'must be > 0')
        require(self.weight_decay >= 0, 'train.weight_decay', self.weight_decay, 'must be >= 0')
        require(
            self.lr_scheduler in LR_SCHEDULERS,
            'train.lr_scheduler',
            self.lr_scheduler,
            f'must be one of {", ".join(LR_SCHEDULERS)}',
        )
        require(
            self.lr_warmup_steps >= 0,
            'train.lr_warmup_steps',
            self.lr_warmup_steps,
            'must be >= 0',
        )
        require(self.lr_num_cycles >= 1, 'train.lr_num_cycles', self.lr_num_cycles, '>= 1')
        require(self.lr_power > 0, 'train.lr_power', self.lr_power, 'must be > 0')
        if self.lr_scheduler == 'piecewise_constant':
            require(
                bool(self.lr_step_rules),
                'train.lr_step_rules',
                self.lr_step_rules,
                'is required by lr_scheduler piecewise_constant',
            )
        if self.lr_step_rules is not None:
            _check_step_rules(self.lr_step_rules)
        require(self.grad_clip >= 0, 'train.grad_clip', self.grad_clip, 'must be >= 0 (0 = off)')
        require(
            self.device == 'auto' or self.device == 'cpu' or self.device.startswith('cuda'),
            'train.device',
            self.device,
            "must be 'auto', 'cpu' or 'cuda[:N]'",
        )
        require(self.num_workers >= 0, 'train.num_workers', self.num_workers, 'must be >= 0')
        require(
            self.windows_per_segment >= 1 and self.batch_size % self.windows_per_segment == 0,
            'train.windows_per_segment',
            self.windows_per_segment,
            f'must be >= 1 and divide train.batch_size ({self.batch_size})',
        )
        require(
            self.aux_goal_weight >= 0, 'train.aux_goal_weight', self.aux_goal_weight, '>= 0'
        )
        require(
            0.0 < self.horizon_decay <= 1.0,
            'train.horizon_decay',
            self.horizon_decay,
            'must be in (0, 1]',
        )
        require(
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
