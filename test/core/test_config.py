"""Config dataclasses: YAML, dotted overrides, errors naming the key and the value."""

from pathlib import Path

from kinova_policy_ros.core.config import (
    DataConfig,
    ExperimentConfig,
    load_experiment_config,
    ModelConfig,
    to_dict,
)
from kinova_policy_ros.core.errors import ConfigError
import pytest

REPO = Path(__file__).resolve().parents[2]


def test_shipped_yaml_loads_and_lists_every_field():
    cfg = load_experiment_config(REPO / 'config' / 'train.yaml')
    assert cfg == ExperimentConfig()  # the YAML documents the defaults, nothing else
    text = (REPO / 'config' / 'train.yaml').read_text()
    for section, values in to_dict(cfg).items():
        for key in values:
            assert f'{key}:' in text, f'{section}.{key} is not documented in config/train.yaml'


def test_overrides_are_parsed_as_yaml():
    cfg = load_experiment_config(
        None,
        [
            'train.num_steps=20',
            'data.resize_hw=[96,128]',
            'train.ema.use_ema_warmup=false',
            'train.lr=1e-3',
            'model.conv_channels=[8,16]',
            'data.max_episode_length=null',
        ],
    )
    assert cfg.train.num_steps == 20
    assert cfg.data.resize_hw == (96, 128)
    assert cfg.data.crop is None
    assert cfg.train.ema.use_ema_warmup is False
    assert cfg.train.lr == pytest.approx(1e-3)
    assert cfg.model.conv_channels == (8, 16)


@pytest.mark.parametrize(
    ('override', 'message'),
    [
        ('train.num_step=20', r'train.num_step: unknown key'),
        ('trian.num_steps=20', r'trian: unknown key'),
        ('train.ema.decay=1.5', r'train.ema.decay: must be in \[0, 1\], got 1.5'),
        ('train.num_steps=ten', r"train.num_steps: expected an integer, got 'ten'"),
        ('train.lr_scheduler=exponential', r"train.lr_scheduler: must be one of .*'exponential'"),
        ('data.resize_hw=[96]', r'data.resize_hw: expected 2 values'),
        ('data.action_horizon=13', r'data.action_horizon: must be in 1..pred_horizon \(12\)'),
        ('data.crop=[0.5,0.5,0.6,0.2]', r'data.crop: must be null or \[top, left, height, w'),
        ('data.crop=[0.1,0.1,0.5]', r'data.crop: expected 4 values, got \[0.1, 0.1, 0.5\]'),
        ('data.crop=[0,0,0,1]', r'data.crop: must be null'),
        ('data.anchor_frame=2', r'data.anchor_frame: expected true/false, got 2'),
        ('model.nhead=3', r'model.d_model: must be divisible by model.nhead \(3\)'),
        ('model.image_pool=max', r"model.image_pool: .*'max'"),
        ('model.conv_norm=batch', r"model.conv_norm: .*'batch'"),
        ('model.keypoint_beta=0', r'model.keypoint_beta: must be > 0'),
        ('train.aux_goal_weight=-1', r'train.aux_goal_weight'),
        ('train.windows_per_segment=7', r'train.windows_per_segment: must be >= 1 and divide'),
        ('train.device=tpu', r"train.device: .*'tpu'"),
        ('train.lr_scheduler=piecewise_constant', r'train.lr_step_rules: is required'),
        ('train.lr_step_rules=oops', r'train.lr_step_rules'),
        ('train.augment.q_history_dropout=2', r'train.augment.q_history_dropout'),
        ('train.num_steps', r'expected dotted.key=value'),
        ('train.batch_size=true', r'train.batch_size: expected an integer, got True'),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_experiment_config(None, [override])


def test_bad_yaml_file_names_the_file(tmp_path: Path):
    p = tmp_path / 'cfg.yaml'
    p.write_text('train:\n  batch_size: 0\n')
    with pytest.raises(ConfigError, match=r'cfg.yaml: train.batch_size: must be >= 1, got 0'):
        load_experiment_config(p)
    with pytest.raises(ConfigError, match='cannot read config'):
        load_experiment_config(tmp_path / 'missing.yaml')


def test_dataclasses_validate_directly():
    with pytest.raises(ConfigError, match=r'data\.max_depth_m'):
        DataConfig(max_depth_m=0.0)
    with pytest.raises(ConfigError, match=r'model\.dropout'):
        ModelConfig(dropout=1.0)
    with pytest.raises(ConfigError, match=r"data\.anchor_frame: must be true or false, got 'yes'"):
        DataConfig(anchor_frame='yes')  # type: ignore[arg-type]


def test_task_action_space_is_validated():
    from kinova_policy_ros.core.config import ModelConfig

    assert ModelConfig(action_space='task').action_space == 'task'
    with pytest.raises(ConfigError, match=r'model\.action_space'):
        ModelConfig(action_space='cartesian')
    with pytest.raises(ConfigError, match=r'model\.residual'):
        ModelConfig(action_space='task', residual=True)
    with pytest.raises(ConfigError, match=r'model\.num_joints'):
        ModelConfig(action_space='task', num_joints=6)
    assert ModelConfig(tcp_offset=0.1086).tcp_offset == 0.1086
    for bad in (-0.01, 0.6, float('nan')):
        with pytest.raises(ConfigError, match=r'model\.tcp_offset'):
            ModelConfig(tcp_offset=bad)
