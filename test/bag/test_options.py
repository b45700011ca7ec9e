"""Tests of kinova_policy_ros.bag.options: the converter's option defaults."""

from dataclasses import fields, FrozenInstanceError, replace
from pathlib import Path

from kinova_policy_ros.bag.cli import load_options
from kinova_policy_ros.bag.options import ConvertOptions
from kinova_policy_ros.core import kinematics as kin
import pytest
import yaml

CONFIG = Path(__file__).resolve().parents[2] / 'config' / 'bag_to_npz.yaml'


def test_yaml_defaults_match_dataclass() -> None:
    assert load_options(CONFIG) == ConvertOptions()


def test_yaml_lists_every_option() -> None:
    keys = set(yaml.safe_load(CONFIG.read_text()))
    assert keys == {f.name for f in fields(ConvertOptions)}


def test_defaults_and_immutability() -> None:
    opts = ConvertOptions()
    assert opts.joint_names == kin.JOINT_NAMES and opts.stamp == 'header'
    assert opts.resize is None and opts.split_on_gap_s is None and opts.compress is True
    with pytest.raises(FrozenInstanceError):
        opts.workers = 2  # type: ignore[misc]
    assert replace(opts, workers=2).workers == 2 and opts.workers == 1
