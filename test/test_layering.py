"""The layering of docs/architecture.md, enforced: one folder per layer, imports point down."""

import ast
import importlib.util
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
    'nav_msgs',
    'visualization_msgs',
    'rcl_interfaces',
    'rosidl_runtime_py',
    'launch',
    'launch_ros',
}
# Which layers each layer may import (besides itself and the package root's __version__).
# Read bottom-up: core < data < policy < {training, bag, sim, testing} < ros < sim.ros < demo.
ALLOWED = {
    'core': set(),
    'data': {'core'},
    'policy': {'core', 'data'},
    'training': {'core', 'data', 'policy'},
    'bag': {'core', 'data'},
    'sim': {'core', 'policy'},
    'testing': {'core', 'data', 'policy'},
    'ros': {'core', 'data', 'policy'},
    'sim.ros': {'core', 'data', 'policy', 'sim', 'ros'},
    'demo': {'core', 'data', 'policy', 'training', 'bag', 'sim', 'sim.ros'},
    'learning_curve_report': {'core', 'data', 'sim'},
    'learning_curve': {
        'core', 'data', 'policy', 'training', 'bag', 'sim', 'sim.ros', 'demo',
        'learning_curve_report',
    },
}
# The ROS adapters: the only layers allowed to import ROS packages.
ADAPTER_LAYERS = {'ros', 'sim.ros'}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix('').parts)
    if parts[-1] == '__init__':
        parts.pop()
    return '.'.join(parts)


def layer_of(module: str) -> str:
    parts = module.split('.')[1:]
    if not parts or parts[0].startswith('__'):
        return 'root'
    if parts[:2] == ['sim', 'ros']:
        return 'sim.ros'
    return parts[0]


def imports_of(path: Path) -> list[tuple[str, bool]]:
    """Every absolute import of ``path`` as (module, is_package_import)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, False) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f'{path}: relative import (use absolute imports)'
            if node.module.startswith('kinova_policy_ros'):
                out += [(f'{node.module}.{a.name}', True) for a in node.names]
            else:
                out.append((node.module, False))
    return out


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PKG.rglob('*.py')}


def test_every_module_sits_in_a_known_layer():
    layers = {layer_of(m) for m in modules()} - {'root'}
    assert layers <= set(ALLOWED), f'modules outside the layers: {layers - set(ALLOWED)}'
    # The package root holds only __init__ (with __version__): every module has a layer.
    assert [m for m in modules() if m.count('.') == 0] == ['kinova_policy_ros']


def test_every_module_has_its_test_file():
    """The tests mirror the package: <layer>/<m>.py is tested in test/<layer>/test_<m>.py."""
    test_root = PKG.parent / 'test'
    missing = []
    for path in sorted(PKG.rglob('*.py')):
        if path.name == '__init__.py':
            continue
        rel = path.relative_to(PKG)
        want = test_root / rel.parent / f'test_{rel.name}'
        if not want.is_file():
            missing.append(str(want.relative_to(PKG.parent)))
    assert missing == []


def test_imports_point_down_the_layers():
    offenders = []
    for mod, path in modules().items():
        src = layer_of(mod)
        if src == 'root':
            continue
        for target, _ in imports_of(path):
            if not target.startswith('kinova_policy_ros'):
                continue
            dst = layer_of(target)
            if dst not in {src, 'root'} and dst not in ALLOWED[src]:
                offenders.append(f'{mod} ({src}) imports {target} ({dst})')
    assert offenders == []


def test_only_adapters_import_ros():
    offenders = {}
    for mod, path in modules().items():
        if layer_of(mod) in ADAPTER_LAYERS:
            continue
        bad = {t.split('.')[0] for t, _ in imports_of(path)} & ROS_MODULES
        if bad:
            offenders[mod] = sorted(bad)
    assert offenders == {}, f'ROS imported below the adapter layer: {offenders}'


def test_no_import_cycle_between_modules():
    mods = modules()
    graph: dict[str, set[str]] = {}
    for mod, path in mods.items():
        deps = set()
        for target, from_import in imports_of(path):
            # 'from pkg import name': name is a module when such a module exists, else pkg is.
            if target in mods:
                deps.add(target)
            elif from_import and target.rsplit('.', 1)[0] in mods:
                deps.add(target.rsplit('.', 1)[0])
        # A package's __init__ is imported with any of its modules: not a dependency edge.
        graph[mod] = {d for d in deps if d != mod and not mod.startswith(d + '.')}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                cycle = [*stack[stack.index(d):], d]
                pytest.fail('import cycle: ' + ' -> '.join(cycle))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_layering_test_sees_a_violation(tmp_path: Path):
    """The checks above are live: a module of a lower layer importing a higher one is caught."""
    bad = tmp_path / 'bad.py'
    bad.write_text('from kinova_policy_ros.ros import policy_node\nimport rclpy\n')
    targets = imports_of(bad)
    assert ('kinova_policy_ros.ros.policy_node', True) in targets
    assert layer_of('kinova_policy_ros.ros.policy_node') not in ALLOWED['data']
    assert {t.split('.')[0] for t, _ in targets} & ROS_MODULES == {'rclpy'}


CORE = sorted(m for m in modules() if layer_of(m) not in ADAPTER_LAYERS | {'root'})


@pytest.mark.parametrize('module', CORE)
def test_core_imports_without_ros_installed(module: str):
    """Import with every ROS package made unimportable (as on a training workstation)."""
    blocker = (
        'import sys\n'
        f'for m in {sorted(ROS_MODULES)!r}:\n'
        '    sys.modules[m] = None\n'
        f'import {module}\n'
    )
    proc = subprocess.run(
        [sys.executable, '-c', blocker], capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0 and importlib.util.find_spec('torch') is None:
        # The Python 3.10 check (scripts/check_py310.py) runs without torch.
        if "No module named 'torch'" in proc.stderr:
            pytest.skip(f'{module} needs torch, which this environment does not have')
    assert proc.returncode == 0, proc.stderr


# The converter runs where torch is not installed (a robot PC recording bags, a data server).
TORCH_FREE = [
    *sorted(m for m in modules() if layer_of(m) in {'core', 'bag'}),
    'kinova_policy_ros.data.schema',
    'kinova_policy_ros.data.preprocess',
]


@pytest.mark.parametrize('module', TORCH_FREE)
def test_converter_imports_without_torch(module: str):
    """Import with torch made unimportable: the rosbag2 -> npz path needs numpy and OpenCV."""
    blocker = f"import sys\nsys.modules['torch'] = None\nimport {module}\n"
    subprocess.run([sys.executable, '-c', blocker], check=True, timeout=120)
