"""Tests of kinova_policy_ros.ros.node_params: parameter table, validation, joint-name mapping."""

from kinova_policy_ros.core import kinematics
from kinova_policy_ros.core.errors import ConfigError
from kinova_policy_ros.ros.node_params import (
    default_values,
    PARAM_BY_NAME,
    PARAMS,
    resolve_joint_mapping,
    settings_from_values,
)
import numpy as np
import pytest

CKPT_NAMES = kinematics.JOINT_NAMES


def _values(**changes: object) -> dict[str, object]:
    values = default_values()
    values['checkpoint'] = '/some/checkpoint'
    values.update(changes)
    return values


def test_table_has_the_issue_parameters_and_valid_types():
    required = {
        'checkpoint',
        'device',
        'rgb_topic',
        'depth_topic',
        'joint_states_topic',
        'command_topic',
        'rgb_compressed',
        'control_rate_hz',
        'action_horizon',
        'max_obs_age_s',
        'joint_names',
        'position_lower',
        'position_upper',
        'velocity_limits',
        'continuous_joints',
        'velocity_scale',
        'enabled_on_start',
        'dry_run',
    }
    assert required <= set(PARAM_BY_NAME)
    assert len(PARAMS) == len(PARAM_BY_NAME)
    for spec in PARAMS:
        assert spec.type_name in {
            'bool',
            'integer',
            'double',
            'string',
            'bool_array',
            'double_array',
            'string_array',
        }
        assert spec.description.endswith(('.', ')'))
    assert PARAM_BY_NAME['checkpoint'].read_only
    assert not PARAM_BY_NAME['velocity_scale'].read_only


def test_defaults_validate():
    s = settings_from_values(_values())
    assert s.checkpoint == '/some/checkpoint'
    assert s.device == 'auto' and s.action_horizon == 0 and s.control_rate_hz == 0.0
    assert s.joint_names == ()
    np.testing.assert_array_equal(s.limits.velocity, kinematics.VELOCITY_LIMITS)
    assert s.limits.velocity_scale == 0.5


@pytest.mark.parametrize(
    ('changes', 'match'),
    [
        ({'checkpoint': ''}, "parameter 'checkpoint' is required"),
        ({'device': 'tpu'}, "parameter 'device'"),
        ({'device': 'cuda:x'}, "parameter 'device'"),
        ({'rgb_topic': ' '}, "parameter 'rgb_topic'"),
        ({'control_rate_hz': -1.0}, "parameter 'control_rate_hz': must be >= 0.0"),
        ({'max_obs_age_s': 0.0}, "parameter 'max_obs_age_s'"),
        ({'max_obs_age_s': float('nan')}, "parameter 'max_obs_age_s': must be finite"),
        ({'action_horizon': -1}, "parameter 'action_horizon'"),
        ({'velocity_scale': 2.0}, "parameter 'velocity_scale'"),
        ({'joint_names': ['a', 'b']}, "parameter 'joint_names'"),
        ({'joint_names': ['a'] * 7}, "parameter 'joint_names'"),
        ({'position_lower': [0.0] * 6}, "parameter 'position_lower': expected 7"),
        ({'continuous_joints': [False] * 7}, 'joint limit parameters'),
        ({'velocity_limits': [0.0] * 7}, 'joint limit parameters'),
    ],
)
def test_invalid_values_raise_naming_the_parameter(changes, match):
    with pytest.raises(ConfigError, match=match):
        settings_from_values(_values(**changes))


def test_missing_values_raise():
    values = _values()
    del values['dry_run']
    with pytest.raises(ConfigError, match='dry_run'):
        settings_from_values(values)


def test_joint_mapping_default_is_the_checkpoint_order():
    m = resolve_joint_mapping([], CKPT_NAMES)
    assert m.robot_names == m.command_names == CKPT_NAMES
    assert m.command_index == tuple(range(7))


def test_joint_mapping_permutation_reorders_the_command():
    order = ['joint_7', 'joint_1', 'joint_2', 'joint_3', 'joint_4', 'joint_5', 'joint_6']
    m = resolve_joint_mapping(order, CKPT_NAMES)
    assert m.robot_names == CKPT_NAMES
    assert m.command_names == tuple(order)
    values = np.arange(7.0)  # checkpoint order: joint_1 -> 0 ...
    assert values[list(m.command_index)].tolist() == [6, 0, 1, 2, 3, 4, 5]


def test_joint_mapping_other_names_rename_by_position():
    names = [f'left_joint_{i}' for i in range(1, 8)]
    m = resolve_joint_mapping(names, CKPT_NAMES)
    assert m.robot_names == m.command_names == tuple(names)
    assert m.command_index == tuple(range(7))
    with pytest.raises(ConfigError, match='3 names'):
        resolve_joint_mapping(['a', 'b', 'c'], CKPT_NAMES)
