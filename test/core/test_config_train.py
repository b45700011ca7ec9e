"""The training section of the configuration (core/config_train.py), checked directly."""

from kinova_policy_ros.core import config
from kinova_policy_ros.core.config_train import (
    AugmentConfig,
    EMAConfig,
    LR_SCHEDULERS,
    TrainConfig,
)
from kinova_policy_ros.core.errors import ConfigError
import pytest


def test_the_one_config_system_exports_the_training_section():
    assert config.TrainConfig is TrainConfig and config.EMAConfig is EMAConfig
    assert config.AugmentConfig is AugmentConfig and config.LR_SCHEDULERS is LR_SCHEDULERS
    assert isinstance(config.ExperimentConfig().train, TrainConfig)


def test_the_schedulers_are_diffusers_names():
    assert set(LR_SCHEDULERS) == {
        'linear',
        'cosine',
        'cosine_with_restarts',
        'polynomial',
        'constant',
        'constant_with_warmup',
        'piecewise_constant',
    }
    assert TrainConfig(lr_scheduler='piecewise_constant', lr_step_rules='1:10,0.1').lr > 0


@pytest.mark.parametrize(
    ('build', 'message'),
    [
        (lambda: TrainConfig(num_steps=0), r'train\.num_steps: must be >= 1, got 0'),
        (lambda: TrainConfig(lr_step_rules='1:x,0.1'), r"train\.lr_step_rules: expected 'mult"),
        (lambda: TrainConfig(horizon_decay=0.0), r'train\.horizon_decay: must be in \(0, 1\]'),
        (lambda: EMAConfig(decay=0.5, min_decay=0.9), r'train\.ema\.min_decay'),
        (lambda: EMAConfig(power=0.0), r'train\.ema\.power: must be > 0, got 0\.0'),
        (lambda: AugmentConfig(depth_noise_std=float('nan')), r'train\.augment\.depth_noise'),
    ],
)
def test_bad_values_name_the_dotted_key(build, message):
    with pytest.raises(ConfigError, match=message):
        build()


def test_heap_reuse_is_on_by_default_and_can_be_turned_off():
    assert TrainConfig().keep_freed_memory is True
    cfg = config.load_experiment_config(None, ['train.keep_freed_memory=false'])
    assert cfg.train.keep_freed_memory is False
    with pytest.raises(ConfigError, match=r'train\.keep_freed_memory: expected true/false'):
        config.load_experiment_config(None, ['train.keep_freed_memory=2'])
