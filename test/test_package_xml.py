"""package.xml declares every ROS package and rosdep key the code imports (rosdep works)."""

import ast
from pathlib import Path
import re
import sys
import xml.etree.ElementTree as ET

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROS_PACKAGES = {
    'rclpy',
    'launch',
    'launch_ros',
    'launch_testing',
    'launch_testing_ros',
    'ament_index_python',
    'rosidl_runtime_py',
}
# Python modules and the rosdep keys that install them on a robot PC.
ROSDEP_KEYS = {
    'numpy': 'python3-numpy',
    'yaml': 'python3-yaml',
    'torch': 'python3-torch',
    'matplotlib': 'python3-matplotlib',
    'tqdm': 'python3-tqdm',
    'cv2': 'python3-opencv',
    'psutil': 'python3-psutil',
    'pytest': 'python3-pytest',
}
# Not in rosdep: installed from PyPI (requirements.txt), named in package.xml's comment.
PIP_ONLY = {
    'diffusers': 'diffusers',
    'safetensors': 'safetensors',
    'rosbags': 'rosbags',
    'mujoco': 'mujoco',
    'zlib_ng': 'zlib-ng',
}
# Local helpers of the tests and benchmarks.
LOCAL = {'kinova_policy_ros', 'helpers', 'common'}


def is_ros_package(name: str) -> bool:
    return name in ROS_PACKAGES or name.endswith(('_msgs', '_srvs', '_interfaces'))


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:`` (never imported at run time)."""
    out: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and ast.unparse(node.test) in {
            'TYPE_CHECKING',
            'typing.TYPE_CHECKING',
        }:
            stack.extend(node.orelse)
            continue
        out.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return out


def imported_roots(paths: list[Path]) -> set[str]:
    roots: set[str] = set()
    for path in paths:
        for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                roots |= {a.name.split('.')[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                roots.add(node.module.split('.')[0])
    return roots - set(sys.stdlib_module_names) - LOCAL


def depends(kind: str) -> set[str]:
    tree = ET.parse(ROOT / 'package.xml')
    tags = {'exec': ('exec_depend', 'depend'), 'test': ('test_depend',)}[kind]
    return {e.text.strip() for t in tags for e in tree.getroot().iter(t) if e.text}


def runtime_files() -> list[Path]:
    return sorted((ROOT / 'kinova_policy_ros').rglob('*.py')) + sorted(
        (ROOT / 'launch').glob('*.py')
    )


def test_every_runtime_import_is_an_exec_depend():
    missing = []
    for name in sorted(imported_roots(runtime_files())):
        if is_ros_package(name):
            key = name
        elif name in ROSDEP_KEYS:
            key = ROSDEP_KEYS[name]
        elif name in PIP_ONLY:
            continue
        else:
            pytest.fail(
                f'{name}: imported by the package but neither a ROS package, a known rosdep key '
                'nor a PyPI-only requirement (add it to this test and to package.xml)'
            )
        if key not in depends('exec'):
            missing.append(key)
    assert missing == [], f'package.xml lacks <exec_depend> for {missing}'


def test_every_test_import_is_declared():
    tests = sorted((ROOT / 'test').rglob('*.py')) + sorted((ROOT / 'bench').glob('*.py'))
    declared = depends('exec') | depends('test')
    missing = []
    for name in sorted(imported_roots(tests)):
        key = name if is_ros_package(name) else ROSDEP_KEYS.get(name)
        if key is not None and key not in declared:
            missing.append(key)
    assert missing == [], f'package.xml lacks <test_depend> for {missing}'


def test_pypi_only_requirements_are_pinned_and_named():
    reqs = (ROOT / 'requirements.txt').read_text()
    xml = (ROOT / 'package.xml').read_text()
    used = imported_roots(runtime_files()) & set(PIP_ONLY)
    assert used, 'the package imports none of the PyPI-only requirements any more?'
    for module in sorted(used):
        dist = PIP_ONLY[module]
        assert re.search(rf'^{re.escape(dist)}(\[[^]]*\])?==', reqs, re.M), (
            f'{dist} (imported as {module}) is not pinned in requirements.txt'
        )
        assert dist in xml, f'{dist}: not named in package.xml comment of PyPI-only packages'


def test_check_sees_a_missing_dependency(tmp_path: Path):
    """The import scan is live: a module importing an undeclared message package is caught."""
    mod = tmp_path / 'm.py'
    mod.write_text(
        'from typing import TYPE_CHECKING\nfrom imaginary_msgs.msg import Thing\nimport os\n'
        'import numpy\nif TYPE_CHECKING:\n    import typing_extensions\n'
    )
    roots = imported_roots([mod])
    assert roots == {'imaginary_msgs', 'numpy'}  # type-checking-only imports are not needed
    assert is_ros_package('imaginary_msgs')
    assert 'imaginary_msgs' not in depends('exec') | depends('test')
