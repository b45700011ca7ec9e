"""
The policy node's parameters through rclpy: declare the table, read it, check run-time changes.

:mod:`~kinova_policy_ros.ros.node_params` holds the table and its validation without ROS; this
module turns each entry into a ROS parameter descriptor, declares them on a node, reads the
values back into :class:`~kinova_policy_ros.ros.node_params.Settings` and validates the changes
allowed at run time (:data:`RUNTIME_PARAMETERS`).
"""

from __future__ import annotations  # Parameter[...] is generic on Kilted only (Jazzy: not)

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from kinova_policy_ros.policy.safety import CommandLimits
from kinova_policy_ros.ros.node_params import (
    check_range,
    make_limits,
    PARAMS,
    ParamSpec,
    Settings,
    settings_from_values,
)
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
)
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter

__all__ = [
    'RUNTIME_PARAMETERS',
    'apply_updates',
    'declare_parameters',
    'descriptor',
    'parameter_values',
    'read_settings',
    'runtime_updates',
]

RUNTIME_PARAMETERS = ('max_obs_age_s', 'velocity_scale')
"""The parameters a running node takes changes of (the others are read-only)."""

_TYPES = {
    'bool': ParameterType.PARAMETER_BOOL,
    'integer': ParameterType.PARAMETER_INTEGER,
    'double': ParameterType.PARAMETER_DOUBLE,
    'string': ParameterType.PARAMETER_STRING,
    'bool_array': ParameterType.PARAMETER_BOOL_ARRAY,
    'double_array': ParameterType.PARAMETER_DOUBLE_ARRAY,
    'string_array': ParameterType.PARAMETER_STRING_ARRAY,
}


def descriptor(spec: ParamSpec) -> ParameterDescriptor:
    """Return the ROS parameter descriptor of one entry of the parameter table."""
    desc = ParameterDescriptor(
        name=spec.name,
        type=_TYPES[spec.type_name],
        description=spec.description,
        read_only=spec.read_only,
    )
    if spec.minimum is not None and spec.maximum is not None:
        if spec.type_name == 'integer':
            desc.integer_range = [
                IntegerRange(from_value=int(spec.minimum), to_value=int(spec.maximum), step=1)
            ]
        else:
            desc.floating_point_range = [
                FloatingPointRange(
                    from_value=float(spec.minimum), to_value=float(spec.maximum), step=0.0
                )
            ]
    return desc


def declare_parameters(node: Node) -> None:
    """Declare every parameter of the table on ``node`` (overrides from the command line apply)."""
    for spec in PARAMS:
        # An empty list has no element type: declare it by type (value unset = default).
        default = (
            Parameter.Type.STRING_ARRAY
            if isinstance(spec.default, list) and not spec.default
            else spec.default
        )
        node.declare_parameter(spec.name, default, descriptor(spec))


def parameter_values(node: Node) -> dict[str, Any]:
    """Return ``{name: value}`` of every declared parameter; an unset one gives its default."""
    values: dict[str, Any] = {}
    for spec in PARAMS:
        try:
            values[spec.name] = node.get_parameter(spec.name).value
        except ParameterUninitializedException:
            # e.g. `joint_names: []` in a YAML file: rcl gives an empty list no type.
            values[spec.name] = spec.default
    return values


def read_settings(node: Node) -> Settings:
    """Declare the parameters on ``node`` and return them validated (ConfigError if not)."""
    declare_parameters(node)
    return settings_from_values(parameter_values(node))


def runtime_updates(params: Sequence[Parameter[Any]]) -> dict[str, float]:
    """
    Return the run-time changes among ``params``, validated.

    :raises ConfigError: naming the parameter and the value out of its range.
    """
    updates: dict[str, float] = {}
    for p in params:
        if p.name in RUNTIME_PARAMETERS:
            check_range(p.name, p.value)
            updates[p.name] = float(p.value)
    return updates


def apply_updates(
    settings: Settings, limits: CommandLimits, updates: Mapping[str, float]
) -> tuple[Settings, CommandLimits]:
    """Return ``settings`` and ``limits`` with the run-time changes of :func:`runtime_updates`."""
    if 'velocity_scale' in updates:
        limits = make_limits(
            limits.lower,
            limits.upper,
            limits.velocity,
            limits.continuous,
            updates['velocity_scale'],
            limits.names,
            limits.acceleration,
        )
    if 'max_obs_age_s' in updates:
        settings = replace(settings, max_obs_age_s=updates['max_obs_age_s'])
    return settings, limits
