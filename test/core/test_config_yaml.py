"""Config values from YAML files and dotted overrides (kinova_policy_ros.core.config_yaml)."""

from pathlib import Path

from kinova_policy_ros.core import config as config_mod
from kinova_policy_ros.core.config_yaml import apply_overrides, parse_override, read_yaml_mapping
from kinova_policy_ros.core.errors import ConfigError
import pytest


def test_config_reexports_the_override_functions():
    assert config_mod.apply_overrides is apply_overrides
    assert config_mod.parse_override is parse_override


@pytest.mark.parametrize(
    ('text', 'path', 'value'),
    [
        ('train.num_steps=20', ['train', 'num_steps'], 20),
        ('data.resize_hw=[96,128]', ['data', 'resize_hw'], [96, 128]),
        ('data.max_episode_length=null', ['data', 'max_episode_length'], None),
        ('train.ema.use_ema_warmup=false', ['train', 'ema', 'use_ema_warmup'], False),
        ('train.lr_step_rules=1:10,0.1', ['train', 'lr_step_rules'], '1:10,0.1'),
        (' a.b =x=y', ['a', 'b'], 'x=y'),  # the first '=' splits, the key is stripped
    ],
)
def test_parse_override_reads_the_value_as_yaml(text, path, value):
    assert parse_override(text) == (path, value)


@pytest.mark.parametrize(
    ('text', 'message'),
    [
        ('train.num_steps', r"override 'train.num_steps': expected dotted.key=value"),
        ('train..lr=1', r"override 'train..lr=1': empty key component"),
        ('=1', r"override '=1': empty key component"),
        ('train.lr=[1', r"train.lr: cannot parse value '\[1' as YAML"),
    ],
)
def test_parse_override_errors_name_the_override(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_override(text)


def test_apply_overrides_copies_and_creates_sections():
    values = {'train': {'lr': 1.0, 'ema': {'decay': 0.9}}, 'data': {'obs_horizon': 8}}
    out = apply_overrides(values, ['train.ema.decay=0.5', 'model.d_model=64', 'train.lr=2'])
    assert out == {
        'train': {'lr': 2, 'ema': {'decay': 0.5}},
        'data': {'obs_horizon': 8},
        'model': {'d_model': 64},
    }
    assert values == {'train': {'lr': 1.0, 'ema': {'decay': 0.9}}, 'data': {'obs_horizon': 8}}
    assert apply_overrides(values, []) == values
    assert apply_overrides(values, []) is not values


def test_a_later_override_wins():
    assert apply_overrides({}, ['a.b=1', 'a.b=2']) == {'a': {'b': 2}}


def test_an_override_below_a_value_is_refused():
    with pytest.raises(ConfigError, match=r'^train\.lr: is not a section'):
        apply_overrides({'train': {'lr': 1.0}}, ['train.lr.x=2'])


def test_read_yaml_mapping(tmp_path: Path):
    good = tmp_path / 'good.yaml'
    good.write_text('train:\n  lr: 0.1\n')
    assert read_yaml_mapping(good) == {'train': {'lr': 0.1}}
    empty = tmp_path / 'empty.yaml'
    empty.write_text('')
    assert read_yaml_mapping(empty) == {}
    listed = tmp_path / 'list.yaml'
    listed.write_text('- 1\n- 2\n')
    with pytest.raises(ConfigError, match=r'list\.yaml: expected a mapping at the top level'):
        read_yaml_mapping(listed)
    broken = tmp_path / 'broken.yaml'
    broken.write_text('train: [1\n')
    with pytest.raises(ConfigError, match=r'broken\.yaml: invalid YAML'):
        read_yaml_mapping(broken)
    with pytest.raises(ConfigError, match=r'missing\.yaml: cannot read config'):
        read_yaml_mapping(tmp_path / 'missing.yaml')
