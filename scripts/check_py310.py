"""
Check the package on Python 3.10 (ROS 2 Humble's Python): compile, import, and the non-ROS tests.

Run with a Python 3.10 interpreter whose environment has the project's requirements except torch
(PyPI serves torch for 3.10 only as a multi-GB CUDA build, so this check does without it):

1. every file of the package, tests, benchmarks and launch files compiles under 3.10;
2. every module of the package imports, except those that need torch or ROS 2 (each named);
3. every test file that imports without torch and ROS runs, ROS-facing tests excluded.

Exit status 0 when all of it passes.
"""

import compileall
from pathlib import Path
import subprocess
import sys

ROOT = Path(__file__).resolve().parents[1]
# What this environment lacks on purpose; any other import error is a failure.
ABSENT = ('torch', 'rclpy', 'launch', 'launch_ros', 'launch_testing', 'diffusers')
ROS_MESSAGES = ('_msgs', '_srvs', '_interfaces')


def _missing_name(stderr: str) -> str | None:
    for line in reversed(stderr.splitlines()):
        if line.startswith('ModuleNotFoundError: No module named'):
            return line.split("'")[1].split('.')[0]
    return None


def _absent_on_purpose(name: str | None) -> bool:
    return name is not None and (name in ABSENT or name.endswith(ROS_MESSAGES))


def _try_import(code: str) -> tuple[bool, str | None, str]:
    proc = subprocess.run(
        [sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    return proc.returncode == 0, _missing_name(proc.stderr), proc.stderr


def main() -> int:
    """Run the three checks; print what was checked and what needs torch or ROS."""
    if sys.version_info[:2] != (3, 10):
        print(f'check_py310: run me with Python 3.10, not {sys.version.split()[0]}')
        return 2
    dirs = ['kinova_policy_ros', 'test', 'bench', 'launch', 'scripts']
    ok = all(compileall.compile_dir(ROOT / d, quiet=1, force=True) for d in dirs)
    if not ok:
        print('check_py310: a file does not compile under Python 3.10')
        return 1
    failures: list[str] = []
    needs: dict[str, str] = {}
    modules = sorted(
        '.'.join(p.relative_to(ROOT).with_suffix('').parts).removesuffix('.__init__')
        for p in (ROOT / 'kinova_policy_ros').rglob('*.py')
    )
    for module in modules:
        good, missing, err = _try_import(f'import {module}')
        if good:
            continue
        if _absent_on_purpose(missing):
            needs[module] = str(missing)
        else:
            failures.append(f'{module}: {err.strip().splitlines()[-1]}')
    print(f'check_py310: {len(modules) - len(needs) - len(failures)} of {len(modules)} modules '
          f'import; {len(needs)} need torch or ROS 2')
    tests, skipped = [], []
    for path in sorted((ROOT / 'test').rglob('test_*.py')):
        rel = path.relative_to(ROOT).as_posix()
        code = (
            'import importlib.util, sys; sys.path.insert(0, "test"); '
            f'spec = importlib.util.spec_from_file_location("m", "{rel}"); '
            'spec.loader.exec_module(importlib.util.module_from_spec(spec))'
        )
        good, missing, err = _try_import(code)
        if good:
            tests.append(rel)
        elif _absent_on_purpose(missing) or err.strip().splitlines()[-1].startswith('Skipped:'):
            skipped.append(rel)  # needs torch / ROS 2, or skips itself (the ament linters)
        else:
            failures.append(f'{rel}: {err.strip().splitlines()[-1]}')
    if failures:
        print('check_py310: failures\n  ' + '\n  '.join(failures))
        return 1
    print(f'check_py310: {len(tests)} test files run, {len(skipped)} need torch or ROS 2')
    cmd = [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '-m', 'not ros', *tests]
    return subprocess.run(cmd, cwd=ROOT).returncode


if __name__ == '__main__':
    raise SystemExit(main())
