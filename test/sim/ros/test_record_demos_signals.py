"""SIGINT / SIGTERM to ``record_demos`` while recording: exit 0, no traceback, no orphan."""

import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import threading

from helpers import wait_for
import pytest

pytestmark = [pytest.mark.slow]


def _children(pid: int) -> set[int]:
    """Return the pids of the direct children of ``pid`` (every thread's)."""
    found: set[int] = set()
    for task in Path(f'/proc/{pid}/task').glob('*'):
        try:
            found |= {int(c) for c in (task / 'children').read_text().split()}
        except OSError:
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0]
    except OSError:
        return False
    return state != 'Z'


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM], ids=['SIGINT', 'SIGTERM'])
@pytest.mark.parametrize('workers', [2, 1])
def test_a_stop_signal_during_recording_ends_everything_with_0(
    tmp_path: Path, sig: int, workers: int
):
    out = tmp_path / 'demos'
    cmd = [sys.executable, '-m', 'kinova_policy_ros.sim.ros.record_demos', '--out', str(out),
           '--episodes', '40', '--workers', str(workers), '--image-width', '32',
           '--image-height', '24', '--settle-time', '0.1']  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, 'PYTHONUNBUFFERED': '1'},
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(
        target=lambda: lines.extend(ln.rstrip() for ln in proc.stdout), daemon=True
    )
    reader.start()
    try:
        # Recording: an episode finished (in a worker, with --workers 2).
        assert wait_for(lambda: any(ln.startswith('episode seed=') for ln in lines)), lines
        children = _children(proc.pid)
        if workers > 1:
            assert len(children) >= 2, children  # the pool's workers
        proc.send_signal(sig)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        reader.join(10)
    output = '\n'.join(lines)
    assert proc.returncode == 0, output
    assert 'Traceback' not in output, output
    assert 'record_demos: stopped; ' in output, output
    assert wait_for(lambda: not any(_alive(c) for c in children), 30.0), (
        f'children still running: {[c for c in children if _alive(c)]}'
    )
    manifest = json.loads((out / 'episodes.json').read_text())
    assert len(manifest.get('episodes', manifest)) < 40
