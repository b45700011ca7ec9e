"""Config dataclasses to and from plain values (kinova_policy_ros.core.config_codec)."""

from dataclasses import dataclass, field
import json

from kinova_policy_ros.core import config as config_mod
from kinova_policy_ros.core.config import DataConfig, ExperimentConfig, ModelConfig
from kinova_policy_ros.core.config_codec import from_dict, to_dict
from kinova_policy_ros.core.errors import ConfigError
import pytest
import yaml


@dataclass
class Inner:
    flag: bool = False
    ratio: float = 0.5


@dataclass
class Outer:
    name: str = 'x'
    count: int = 1
    size: tuple[int, int] = (2, 3)
    channels: tuple[int, ...] = (4,)
    limit: float | None = None
    inner: Inner = field(default_factory=Inner)


def test_config_reexports_the_codec():
    assert config_mod.from_dict is from_dict
    assert config_mod.to_dict is to_dict


def test_round_trip_through_json_and_yaml():
    cfg = ExperimentConfig(
        data=DataConfig(resize_hw=(32, 48), crop=(0.1, 0.2, 0.5, 0.6), anchor_frame=True),
        model=ModelConfig(conv_channels=(8, 16, 32), d_model=64),
    )
    plain = to_dict(cfg)
    assert plain['data']['resize_hw'] == [32, 48]  # tuples become lists
    assert plain['data']['crop'] == [0.1, 0.2, 0.5, 0.6]
    assert plain['model']['conv_channels'] == [8, 16, 32]
    assert from_dict(ExperimentConfig, json.loads(json.dumps(plain))) == cfg
    assert from_dict(ExperimentConfig, yaml.safe_load(yaml.safe_dump(plain))) == cfg


def test_from_dict_converts_to_the_annotated_types():
    got = from_dict(
        Outer,
        {
            'name': 'y',
            'count': 7,
            'size': [5, 6],
            'channels': [1, 2, 3],
            'limit': 2,
            'inner': {'flag': True, 'ratio': '1e-3'},
        },
    )
    assert got == Outer('y', 7, (5, 6), (1, 2, 3), 2.0, Inner(True, 1e-3))
    assert isinstance(got.limit, float)  # an int given for a float field becomes a float
    assert isinstance(got.inner.ratio, float)  # YAML 1.1 reads '1e-3' as a string
    assert from_dict(Outer, {'limit': None}).limit is None
    assert from_dict(Outer, {}) == Outer()


@pytest.mark.parametrize(
    ('values', 'message'),
    [
        ({'nmae': 'y'}, r'outer\.nmae: unknown key \(known: channels, count, inner, limit'),
        ({'inner': {'flg': True}}, r'outer\.inner\.flg: unknown key \(known: flag, ratio\)'),
        ({'count': 1.5}, r'outer\.count: expected an integer, got 1\.5'),
        ({'count': True}, r'outer\.count: expected an integer, got True'),
        ({'name': 3}, r'outer\.name: expected a string, got 3'),
        ({'inner': {'flag': 'yes'}}, r"outer\.inner\.flag: expected true/false, got 'yes'"),
        ({'inner': {'ratio': 'half'}}, r"outer\.inner\.ratio: expected a number, got 'half'"),
        ({'inner': 3}, r'outer\.inner: expected a mapping, got 3'),
        ({'size': 'ab'}, r"outer\.size: expected a list, got 'ab'"),
        ({'size': [1, 2, 3]}, r'outer\.size: expected 2 values, got \[1, 2, 3\]'),
        ({'channels': [1, 'b']}, r"outer\.channels\[1\]: expected an integer, got 'b'"),
        ({'limit': 'none'}, r"outer\.limit: expected a number, got 'none'"),
    ],
)
def test_from_dict_names_the_dotted_key_and_the_value(values, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(Outer, values, prefix='outer')


def test_without_prefix_the_key_stands_alone():
    with pytest.raises(ConfigError, match=r'^count: expected an integer'):
        from_dict(Outer, {'count': 'one'})


def test_validation_errors_of_the_dataclass_pass_through():
    with pytest.raises(ConfigError, match=r'model\.dropout: must be in \[0, 1\), got 1\.0'):
        from_dict(ModelConfig, {'dropout': 1.0}, prefix='model')


def test_to_dict_refuses_values_that_are_not_plain():
    @dataclass
    class Odd:
        value: object = field(default_factory=set)

    with pytest.raises(ConfigError, match=r'to_dict: set\(\) is not a plain config value'):
        to_dict(Odd())
