"""Structural checks of ``launch/sim_demo.launch.py`` and ``config/sim.yaml`` (no launch)."""

import ast
from pathlib import Path
from typing import Any

from kinova_policy_ros.ros import node_params
from kinova_policy_ros.sim.ros.sim_node import PARAMETERS
import yaml

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ROOT / 'launch' / 'sim_demo.launch.py'
SIM_YAML = ROOT / 'config' / 'sim.yaml'


def _tree() -> ast.Module:
    return ast.parse(LAUNCH.read_text(encoding='utf-8'))


def _constants(tree: ast.Module) -> dict[str, Any]:
    out = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name):
            try:
                out[stmt.targets[0].id] = ast.literal_eval(stmt.value)
            except ValueError:
                pass
    return out


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, 'id', getattr(n.func, 'attr', None)) == name
    ]


def _kw(call: ast.Call, name: str, constants: dict[str, Any]) -> Any:
    node = next((k.value for k in call.keywords if k.arg == name), None)
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    return ast.literal_eval(node) if node is not None else None


def _dict_keys(tree: ast.AST, variable: str) -> set[str]:
    keys: set[str] = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.AnnAssign) and getattr(n.target, 'id', '') == variable:
            assert isinstance(n.value, ast.Dict)
            keys |= {ast.literal_eval(k) for k in n.value.keys if k is not None}
        if (
            isinstance(n, ast.Subscript)
            and isinstance(n.ctx, ast.Store)
            and getattr(n.value, 'id', '') == variable
        ):
            keys.add(ast.literal_eval(n.slice))
    return keys


def test_launch_starts_the_sim_and_the_policy_node():
    tree = _tree()
    constants = _constants(tree)
    nodes = _calls(tree, 'Node')
    found = {
        (_kw(n, 'package', constants), _kw(n, 'executable', constants), _kw(n, 'name', constants))
        for n in nodes
    }
    assert found == {
        ('kinova_policy_ros', 'sim_node', 'sim_node'),
        (node_params.PACKAGE, node_params.EXECUTABLE, node_params.NODE_NAME),
    }
    setup = (ROOT / 'setup.py').read_text(encoding='utf-8')
    assert "'sim_node = kinova_policy_ros.sim.ros.sim_node:main'" in setup


def test_launch_arguments_are_declared_and_described():
    tree = _tree()
    declared = {}
    for call in _calls(tree, 'DeclareLaunchArgument'):
        declared[ast.literal_eval(call.args[0])] = call
        assert _kw(call, 'description', {}), ast.literal_eval(call.args[0])
    used = {ast.literal_eval(c.args[0]) for c in _calls(tree, 'LaunchConfiguration')}
    assert used <= set(declared), used - set(declared)
    assert {'checkpoint', 'seed', 'sim_params_file', 'policy_params_file', 'device'} <= set(
        declared
    )
    # checkpoint is required
    assert not any(k.arg == 'default_value' for k in declared['checkpoint'].keywords)


def test_launch_sets_only_parameters_the_nodes_declare():
    tree = _tree()
    sim_keys = _dict_keys(tree, 'sim_overrides')
    policy_keys = _dict_keys(tree, 'policy_overrides')
    assert sim_keys and policy_keys
    assert sim_keys <= set(PARAMETERS) | {'use_sim_time'}
    known = {p.name for p in node_params.PARAMS} | {'use_sim_time'}
    assert policy_keys <= known, policy_keys - known
    for call in _calls(tree, 'ParameterValue'):
        assert any(k.arg == 'value_type' for k in call.keywords)


def test_sim_yaml_equals_the_node_defaults():
    data = yaml.safe_load(SIM_YAML.read_text(encoding='utf-8'))
    assert list(data) == ['sim_node']
    params = data['sim_node']['ros__parameters']
    assert set(params) == set(PARAMETERS)
    for name, value in params.items():
        default = PARAMETERS[name]
        assert type(value) is type(default), f'{name}: {value!r} is not a {type(default)}'
        assert value == default, f'{name}: yaml {value!r} != node default {default!r}'
