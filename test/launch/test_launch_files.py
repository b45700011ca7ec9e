"""
Structural checks of every ``launch/*.launch.py``, without ``launch``/``launch_ros`` installed.

Each file is parsed with ``ast`` and compared with ``setup.py`` (console scripts, installed data
files), with the node parameter table and with ``config/policy.yaml``.
"""

import ast
from pathlib import Path
from typing import Any

from kinova_policy_ros.core import kinematics
from kinova_policy_ros.ros import node_params
import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_FILES = sorted((ROOT / 'launch').glob('*.launch.py'))
POLICY_LAUNCH = ROOT / 'launch' / 'policy.launch.py'
POLICY_YAML = ROOT / 'config' / 'policy.yaml'
# Parameters every rclpy node has.
BUILTIN_PARAMS = {'use_sim_time'}
POLICY_ARGS = {
    'checkpoint',
    'params_file',
    'device',
    'use_sim_time',
    'rgb_topic',
    'depth_topic',
    'joint_states_topic',
    'command_topic',
    'enabled_on_start',
    'dry_run',
    'base_frame',
}


def _call_name(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ''


class LaunchFile:
    """What a launch file declares, found by walking its syntax tree."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tree = ast.parse(path.read_text(encoding='utf-8'), filename=str(path))
        self.constants: dict[str, Any] = {}
        for stmt in self.tree.body:
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
                target = stmt.targets[0]
                if isinstance(target, ast.Name):
                    try:
                        self.constants[target.id] = ast.literal_eval(stmt.value)
                    except ValueError:
                        pass
        self.calls = [n for n in ast.walk(self.tree) if isinstance(n, ast.Call)]

    def value(self, node: ast.AST | None) -> Any:
        """Return a literal or a module-level constant's value; None when unknown."""
        if node is None:
            return None
        if isinstance(node, ast.Name):
            return self.constants.get(node.id)
        try:
            return ast.literal_eval(node)
        except ValueError:
            return None

    def calls_of(self, name: str) -> list[ast.Call]:
        return [c for c in self.calls if _call_name(c) == name]

    @staticmethod
    def kwarg(call: ast.Call, name: str) -> ast.AST | None:
        return next((k.value for k in call.keywords if k.arg == name), None)

    def declared_arguments(self) -> dict[str, ast.Call]:
        out = {}
        for call in self.calls_of('DeclareLaunchArgument'):
            name = self.value(call.args[0]) if call.args else self.value(self.kwarg(call, 'name'))
            assert isinstance(name, str), f'{self.path.name}: launch argument name not a literal'
            out[name] = call
        return out

    def used_configurations(self) -> set[str]:
        """Names of LaunchConfiguration(...) with a literal (or constant) name."""
        names = set()
        for call in self.calls_of('LaunchConfiguration'):
            name = self.value(call.args[0]) if call.args else None
            if isinstance(name, str):
                names.add(name)
        return names

    def nodes(self) -> list[ast.Call]:
        return self.calls_of('Node')

    def functions(self) -> set[str]:
        return {n.name for n in ast.walk(self.tree) if isinstance(n, ast.FunctionDef)}


def _setup_py() -> tuple[str, dict[str, str], ast.Call]:
    """Return (package name, {console script: 'module:function'}, the setup() call)."""
    tree = ast.parse((ROOT / 'setup.py').read_text(encoding='utf-8'))
    package_name = None
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name):
            if stmt.targets[0].id == 'package_name':
                package_name = ast.literal_eval(stmt.value)
    setup_call = next(
        n for n in ast.walk(tree) if isinstance(n, ast.Call) and _call_name(n) == 'setup'
    )
    entry = next(k.value for k in setup_call.keywords if k.arg == 'entry_points')
    entry_points = ast.literal_eval(entry)
    scripts = {}
    for line in entry_points['console_scripts']:
        name, _, target = line.partition('=')
        scripts[name.strip()] = target.strip()
    assert isinstance(package_name, str)
    return package_name, scripts, setup_call


def _defines_function(target: str) -> bool:
    module, _, func = target.partition(':')
    path = ROOT.joinpath(*module.split('.')).with_suffix('.py')
    if not path.exists():
        return False
    tree = ast.parse(path.read_text(encoding='utf-8'))
    return any(isinstance(n, ast.FunctionDef) and n.name == func for n in tree.body)


def _policy_yaml() -> dict[str, Any]:
    return yaml.safe_load(POLICY_YAML.read_text(encoding='utf-8'))


def test_there_are_launch_files():
    assert POLICY_LAUNCH in LAUNCH_FILES


@pytest.mark.parametrize('path', LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_is_consistent(path: Path):
    package_name, scripts, _ = _setup_py()
    lf = LaunchFile(path)
    assert 'generate_launch_description' in lf.functions()
    declared = lf.declared_arguments()
    for name, call in declared.items():
        assert lf.value(lf.kwarg(call, 'description')), f'{path.name}: {name!r} has no description'
    undeclared = lf.used_configurations() - set(declared)
    assert not undeclared, f'{path.name}: LaunchConfiguration of undeclared arguments {undeclared}'
    nodes = lf.nodes()
    assert nodes or lf.calls_of('ExecuteProcess'), f'{path.name}: starts no Node and no process'
    for call in nodes:
        package = lf.value(lf.kwarg(call, 'package'))
        executable = lf.value(lf.kwarg(call, 'executable'))
        if package != package_name:
            continue  # another package's node (e.g. robot_state_publisher)
        assert executable in scripts, (
            f'{path.name}: executable {executable!r} is not a console script of setup.py '
            f'({sorted(scripts)})'
        )
        assert _defines_function(scripts[executable]), f'{scripts[executable]} does not exist'
        if executable == node_params.EXECUTABLE:
            # The policy node keeps its name, so config/policy.yaml (keyed by it) applies.
            assert lf.value(lf.kwarg(call, 'name')) == node_params.NODE_NAME
            params = lf.kwarg(call, 'parameters')
            assert isinstance(params, ast.List) and params.elts, 'policy node without parameters'


def test_setup_installs_launch_and_config_files():
    _, _, setup_call = _setup_py()
    data_files = ast.unparse(next(k.value for k in setup_call.keywords if k.arg == 'data_files'))
    assert "'launch/*.launch.py'" in data_files
    assert "'config/*.yaml'" in data_files
    assert "'config/*.xml'" in data_files  # the Fast DDS shared-memory profile


def test_policy_launch_declares_its_arguments_and_node():
    package_name, scripts, _ = _setup_py()
    lf = LaunchFile(POLICY_LAUNCH)
    declared = lf.declared_arguments()
    assert set(declared) >= POLICY_ARGS
    # checkpoint is required: no default value.
    assert lf.kwarg(declared['checkpoint'], 'default_value') is None
    (node,) = lf.nodes()
    assert lf.value(lf.kwarg(node, 'package')) == package_name == node_params.PACKAGE
    assert lf.value(lf.kwarg(node, 'executable')) == node_params.EXECUTABLE
    assert scripts[node_params.EXECUTABLE] == 'kinova_policy_ros.ros.policy_node:main'
    assert lf.value(lf.kwarg(node, 'name')) == node_params.NODE_NAME
    assert list(_policy_yaml()) == [node_params.NODE_NAME]


def test_policy_launch_parameters_are_declared_by_the_node_and_typed():
    lf = LaunchFile(POLICY_LAUNCH)
    known = {p.name for p in node_params.PARAMS} | BUILTIN_PARAMS
    keys: set[str] = set(lf.constants.get('STRING_OVERRIDES', ()))
    for node in ast.walk(lf.tree):
        # Parameter dictionaries: {'name': ParameterValue(...)} and overrides['name'] = ...
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                name = lf.value(key)
                if isinstance(name, str):
                    keys.add(name)
                    assert isinstance(value, ast.Call) and _call_name(value) == 'ParameterValue'
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store):
            name = lf.value(node.slice)
            if isinstance(name, str):
                keys.add(name)
    assert keys >= {'checkpoint', 'use_sim_time', 'device', 'rgb_topic', 'command_topic'}
    # Overrides looked up by a variable name are launch arguments too.
    assert set(lf.constants['STRING_OVERRIDES']) <= set(lf.declared_arguments())
    assert set(lf.constants['BOOL_OVERRIDES']) <= set(lf.declared_arguments())
    assert set(lf.constants['BOOL_OVERRIDES']) >= {'dry_run', 'enabled_on_start'}
    keys |= set(lf.constants['BOOL_OVERRIDES'])
    for name in lf.constants['BOOL_OVERRIDES']:
        assert node_params.PARAM_BY_NAME[name].type_name == 'bool', name
    assert keys <= known, f'launch file sets undeclared parameters {keys - known}'
    # Every ParameterValue says its type.
    for call in lf.calls_of('ParameterValue'):
        assert lf.kwarg(call, 'value_type') is not None


def test_every_yaml_parameter_is_declared_with_its_default_and_type():
    params = _policy_yaml()[node_params.NODE_NAME]['ros__parameters']
    table = node_params.PARAM_BY_NAME
    assert set(params) <= set(table), f'undeclared: {set(params) - set(table)}'
    missing = {p.name for p in node_params.PARAMS if p.in_yaml} - set(params)
    assert not missing, f'policy.yaml lacks {missing}'
    python_types = {'bool': bool, 'integer': int, 'double': float, 'string': str}
    for name, value in params.items():
        spec = table[name]
        kind = spec.type_name
        if kind.endswith('_array'):
            assert isinstance(value, list)
            element = python_types[kind.removesuffix('_array')]
            assert all(type(v) is element for v in value), f'{name}: {value} not {kind}'
        else:
            assert type(value) is python_types[kind], f'{name}: {value!r} is not a {kind}'
        assert value == spec.default, f'{name}: yaml {value!r} != node default {spec.default!r}'


def test_yaml_limits_equal_the_kinematics_constants():
    params = _policy_yaml()[node_params.NODE_NAME]['ros__parameters']
    np.testing.assert_array_equal(params['position_lower'], kinematics.POSITION_LOWER)
    np.testing.assert_array_equal(params['position_upper'], kinematics.POSITION_UPPER)
    np.testing.assert_array_equal(params['velocity_limits'], kinematics.VELOCITY_LIMITS)
    assert params['continuous_joints'] == kinematics.CONTINUOUS.tolist()


RECORD_LAUNCH = ROOT / 'launch' / 'record.launch.py'


def test_record_launch_records_what_the_converter_reads():
    """record.launch.py builds its command with bag.record from the converter config."""
    lf = LaunchFile(RECORD_LAUNCH)
    assert set(lf.declared_arguments()) == {'output', 'config', 'storage', 'max_bag_duration'}
    called = {_call_name(c) for c in lf.calls}
    assert {'load_options', 'write_qos_overrides', 'record_command', 'ExecuteProcess'} <= called
    imports = {
        (n.module, a.name)
        for n in ast.walk(lf.tree)
        if isinstance(n, ast.ImportFrom)
        for a in n.names
    }
    assert ('kinova_policy_ros.bag.record', 'record_command') in imports
    assert ('kinova_policy_ros.bag.cli', 'load_options') in imports
    default = ast.unparse(lf.kwarg(lf.declared_arguments()['config'], 'default_value'))
    assert default == 'default_config'
    assert "'bag_to_npz.yaml'" in RECORD_LAUNCH.read_text()
