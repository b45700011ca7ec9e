"""Small shared helpers for the tests (import as ``from helpers import ...``)."""

from collections.abc import Iterator
import contextlib
import os
from pathlib import Path
import signal
import subprocess
import sys
import threading
import time

from kinova_policy_ros.data.schema import Episode
from kinova_policy_ros.testing.synthetic import make_episode


def episode_arrays(seed: int = 0, num_frames: int = 12, hw: tuple[int, int] = (16, 20)) -> dict:
    """Return a valid episode as a dict of arrays (copies: safe to corrupt)."""
    return {k: v.copy() for k, v in make_episode(seed, num_frames, hw).to_arrays().items()}


def small_episode(seed: int = 0, num_frames: int = 12, hw: tuple[int, int] = (16, 20)) -> Episode:
    return make_episode(seed, num_frames, hw)


def ls(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


@contextlib.contextmanager
def bounded(seconds: int = 10) -> Iterator[None]:
    """Fail the case (TimeoutError) instead of hanging when it runs longer than ``seconds``."""

    def _expired(signum: int, frame: object) -> None:
        raise TimeoutError(f'case still running after {seconds} s')

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


class PolicyNodeProcess:
    """The policy node as a child process (``--ros-args`` given), its output read by a thread."""

    def __init__(self, *ros_args: str) -> None:
        cmd = [sys.executable, '-m', 'kinova_policy_ros.ros.policy_node', '--ros-args', *ros_args]
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, 'PYTHONUNBUFFERED': '1', 'RCUTILS_LOGGING_BUFFERED_STREAM': '0'},
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    @property
    def output(self) -> str:
        return '\n'.join(self.lines)

    def wait_ready(self, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end and not any('ready:' in ln for ln in self.lines):
            time.sleep(0.01)
        assert any('ready:' in ln for ln in self.lines), (
            f'node not ready within {timeout} s (rc={self.proc.poll()}):\n{self.output}'
        )

    def stop(self, sig: int = signal.SIGINT, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
        return int(self.proc.returncode)
