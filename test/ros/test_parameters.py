"""Tests of kinova_policy_ros.ros.parameters: descriptors, declaring, reading, run-time changes."""

from collections.abc import Iterator
from dataclasses import replace

from kinova_policy_ros.core.errors import ConfigError
from kinova_policy_ros.ros.node_params import (
    default_values,
    PARAM_BY_NAME,
    PARAMS,
    settings_from_values,
)
from kinova_policy_ros.ros.parameters import (
    apply_updates,
    declare_parameters,
    descriptor,
    parameter_values,
    read_settings,
    RUNTIME_PARAMETERS,
    runtime_updates,
)
import numpy as np
import pytest
from rcl_interfaces.msg import ParameterType
import rclpy
from rclpy.node import Node
from rclpy.parameter import Parameter

TYPES = {
    'bool': ParameterType.PARAMETER_BOOL,
    'integer': ParameterType.PARAMETER_INTEGER,
    'double': ParameterType.PARAMETER_DOUBLE,
    'string': ParameterType.PARAMETER_STRING,
    'bool_array': ParameterType.PARAMETER_BOOL_ARRAY,
    'double_array': ParameterType.PARAMETER_DOUBLE_ARRAY,
    'string_array': ParameterType.PARAMETER_STRING_ARRAY,
}


@pytest.mark.parametrize('spec', PARAMS, ids=[p.name for p in PARAMS])
def test_descriptor_mirrors_the_table_entry(spec):
    desc = descriptor(spec)
    assert desc.name == spec.name
    assert desc.type == TYPES[spec.type_name]
    assert desc.description == spec.description
    assert desc.read_only == spec.read_only
    has_range = spec.minimum is not None and spec.maximum is not None
    if has_range and spec.type_name == 'integer':
        assert len(desc.integer_range) == 1 and len(desc.floating_point_range) == 0
        r = desc.integer_range[0]
        assert (r.from_value, r.to_value, r.step) == (spec.minimum, spec.maximum, 1)
    elif has_range:
        assert len(desc.floating_point_range) == 1 and len(desc.integer_range) == 0
        r = desc.floating_point_range[0]
        assert (r.from_value, r.to_value, r.step) == (spec.minimum, spec.maximum, 0.0)
    else:
        assert len(desc.integer_range) == 0 and len(desc.floating_point_range) == 0


def test_descriptors_of_known_parameters():
    threads = descriptor(PARAM_BY_NAME['torch_num_threads'])
    assert threads.type == ParameterType.PARAMETER_INTEGER
    assert (threads.integer_range[0].from_value, threads.integer_range[0].to_value) == (0, 256)
    scale = descriptor(PARAM_BY_NAME['velocity_scale'])
    assert scale.type == ParameterType.PARAMETER_DOUBLE and not scale.read_only
    assert scale.floating_point_range[0].from_value == pytest.approx(0.01)
    names = descriptor(PARAM_BY_NAME['joint_names'])
    assert names.type == ParameterType.PARAMETER_STRING_ARRAY and names.read_only
    assert descriptor(PARAM_BY_NAME['continuous_joints']).type == (
        ParameterType.PARAMETER_BOOL_ARRAY
    )


def test_the_runtime_parameters_are_the_writable_ones():
    assert set(RUNTIME_PARAMETERS) == {p.name for p in PARAMS if not p.read_only}


def test_runtime_updates_validate_and_keep_only_runtime_parameters():
    params = [
        Parameter('velocity_scale', value=0.1),
        Parameter('max_obs_age_s', value=0.5),
        Parameter('control_rate_hz', value=5.0),  # read-only: rcl rejects it, not this
    ]
    assert runtime_updates(params) == {'velocity_scale': 0.1, 'max_obs_age_s': 0.5}
    assert runtime_updates([]) == {}


@pytest.mark.parametrize(
    ('name', 'value', 'match'),
    [
        ('velocity_scale', 5.0, "parameter 'velocity_scale': must be <= 1.0, got 5.0"),
        ('velocity_scale', 0.0, "parameter 'velocity_scale': must be >= 0.01, got 0.0"),
        ('max_obs_age_s', float('nan'), "parameter 'max_obs_age_s': must be finite"),
        ('max_obs_age_s', 61.0, "parameter 'max_obs_age_s': must be <= 60.0"),
    ],
)
def test_runtime_updates_reject_values_out_of_range(name, value, match):
    with pytest.raises(ConfigError, match=match):
        runtime_updates([Parameter('velocity_scale', value=0.2), Parameter(name, value=value)])


def _settings():
    values = default_values()
    values['checkpoint'] = '/some/checkpoint'
    return settings_from_values(values)


def test_apply_updates_changes_only_what_was_updated():
    settings = _settings()
    limits = replace(settings.limits, names=tuple(f'j{i}' for i in range(7)))
    same_settings, same_limits = apply_updates(settings, limits, {})
    assert same_settings is settings and same_limits is limits

    new_settings, new_limits = apply_updates(settings, limits, {'velocity_scale': 0.2})
    assert new_settings is settings
    assert new_limits.velocity_scale == 0.2
    assert new_limits.names == limits.names
    np.testing.assert_array_equal(new_limits.velocity, limits.velocity)
    np.testing.assert_array_equal(new_limits.lower, limits.lower)
    np.testing.assert_array_equal(new_limits.continuous, limits.continuous)
    np.testing.assert_allclose(new_limits.max_velocity, 0.2 * limits.velocity)

    new_settings, new_limits = apply_updates(settings, limits, {'max_obs_age_s': 1.5})
    assert new_limits is limits
    assert new_settings.max_obs_age_s == 1.5
    assert replace(new_settings, max_obs_age_s=settings.max_obs_age_s) == settings


@pytest.fixture
def context() -> Iterator[rclpy.Context]:
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        yield ctx
    finally:
        rclpy.try_shutdown(context=ctx)


def _node(context: rclpy.Context, **overrides: object) -> Node:
    return Node(
        'parameters_test',
        context=context,
        parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()],
    )


def test_declare_parameters_declares_the_whole_table(context):
    node = _node(context)
    try:
        declare_parameters(node)
        assert all(node.has_parameter(p.name) for p in PARAMS)
        values = parameter_values(node)
        assert set(values) == set(PARAM_BY_NAME)
        # the empty list is declared by type only: reading it gives the table default
        assert values['joint_names'] == []
        assert values['device'] == 'auto' and values['velocity_scale'] == 0.5
        assert node.describe_parameter('max_obs_age_s').floating_point_range[0].to_value == 60.0
    finally:
        node.destroy_node()


def test_read_settings_takes_overrides_and_validates(context):
    names = [f'left_joint_{i}' for i in range(1, 8)]
    node = _node(
        context,
        checkpoint='/ckpt',
        velocity_scale=0.25,
        joint_names=names,
        dry_run=True,
    )
    try:
        s = read_settings(node)
        assert s.checkpoint == '/ckpt' and s.dry_run
        assert s.limits.velocity_scale == 0.25
        assert s.joint_names == tuple(names)
        # read-only parameters refuse changes; the run-time ones take valid values
        result = node.set_parameters([Parameter('checkpoint', value='/other')])[0]
        assert not result.successful
        assert node.set_parameters([Parameter('velocity_scale', value=0.3)])[0].successful
    finally:
        node.destroy_node()


def test_read_settings_without_a_checkpoint_raises(context):
    node = _node(context)
    try:
        with pytest.raises(ConfigError, match="parameter 'checkpoint' is required"):
            read_settings(node)
    finally:
        node.destroy_node()
