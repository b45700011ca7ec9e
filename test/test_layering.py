"""The layering of ARCHITECTURE.md: nothing below the ROS adapters imports ROS."""

import ast
from pathlib import Path
import subprocess
import sys

import pytest

PKG = Path(__file__).resolve().parents[1] / 'kinova_policy_ros'
ROS_MODULES = {
    'rclpy',
    'sensor_msgs',
    'std_msgs',
    'std_srvs',
    'trajectory_msgs',
    'diagnostic_msgs',
    'builtin_interfaces',
    'geometry_msgs',
    'rosidl_runtime_py',
    'launch',
    'launch_ros',
}
# The ROS adapters: the only modules allowed to import ROS packages.
ADAPTERS = {
    'policy_node.py',
    'sim_node.py',
    'expert_node.py',
    'recorder.py',
    'record_demos.py',
    'messages.py',
    'dds_eval.py',
}
CORE = [
    'errors',
    'schema',
    'preprocess',
    'config',
    'dataset',
    'model',
    'checkpoint',
    'inference',
    'train',
    'evaluate',
    'safety',
    'kinematics',
    'image_codec',
    'sim.env',
    'sim.trajectory',
    'sim.expert',
    'sim.closed_loop',
]


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split('.')[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split('.')[0])
    return roots


def test_only_adapters_import_ros():
    offenders = {}
    for path in PKG.rglob('*.py'):
        if path.name in ADAPTERS:
            continue
        bad = imported_roots(path) & ROS_MODULES
        if bad:
            offenders[str(path.relative_to(PKG))] = sorted(bad)
    assert offenders == {}, f'ROS imported below the adapter layer: {offenders}'


@pytest.mark.parametrize('module', CORE)
def test_core_imports_without_ros_installed(module: str):
    """Import with every ROS package made unimportable (as on a training workstation)."""
    blocker = (
        'import sys\n'
        f'for m in {sorted(ROS_MODULES)!r}:\n'
        '    sys.modules[m] = None\n'
        f'import kinova_policy_ros.{module}\n'
    )
    subprocess.run([sys.executable, '-c', blocker], check=True, timeout=120)
