"""
Nodes as child processes: their command lines, start, liveness checks and stop.

``sim_node`` and ``policy_node`` run as separate processes exactly as they would next to a
robot (``python -m ... --ros-args -p ...``), stdout + stderr in a log file each. A process that
exits early is reported with the end of its log; stopping is SIGINT, then SIGKILL.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
import json
import math
import os
from pathlib import Path
import signal
import subprocess
import sys
from typing import IO

from kinova_policy_ros.core.errors import ConfigError, KinovaPolicyError
from kinova_policy_ros.sim.camera import camera_profile, DEFAULT_PROFILE
from kinova_policy_ros.sim.eval_records import ProcessInfo
from kinova_policy_ros.sim.mjcf import SceneConfig

DEFAULT_CAMERA_HZ = 15.0


def ros_param_arg(name: str, value: object) -> str:
    """
    Return ``name:=value`` for ``--ros-args -p`` with a value that keeps its ROS type.

    Booleans become ``true``/``false``, floats always carry a decimal point (``20`` would be an
    integer parameter), strings are quoted, sequences become YAML lists.
    """
    return f'{name}:={_yaml_value(value)}'


def _yaml_value(value: object) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f'ROS parameter values must be finite, got {value!r}')
        text = repr(value)
        if 'e' in text and '.' not in text.split('e')[0]:
            mantissa, exponent = text.split('e')
            text = f'{mantissa}.0e{exponent}'
        return text
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, Sequence):
        return '[' + ', '.join(_yaml_value(v) for v in value) + ']'
    raise ConfigError(f'unsupported ROS parameter value {value!r} ({type(value).__name__})')


def number_param(name: str, value: object) -> float:
    """Return a numeric ``sim_node`` parameter as a float; ConfigError naming it otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f'sim parameter {name!r}: expected a number, got {value!r}')
    return float(value)


def policy_node_command(checkpoint: Path, params: Mapping[str, object]) -> list[str]:
    """Command line that starts ``policy_node`` on ``checkpoint`` with ``params``."""
    cmd = [
        sys.executable,
        '-m',
        'kinova_policy_ros.ros.policy_node',
        '--ros-args',
        '-p',
        ros_param_arg('checkpoint', str(checkpoint)),
    ]
    for name, value in params.items():
        cmd += ['-p', ros_param_arg(name, value)]
    return cmd


def sim_node_command(
    seed: int, scene: SceneConfig, camera_hz: float, profile: str = DEFAULT_PROFILE
) -> list[str]:
    """Command line that starts ``sim_node`` in a child process (camera ``profile``)."""
    return [
        sys.executable,
        '-m',
        'kinova_policy_ros.sim.ros.sim_node',
        '--ros-args',
        '-p',
        f'seed:={int(seed)}',
        '-p',
        f'image_width:={scene.image_width}',
        '-p',
        f'image_height:={scene.image_height}',
        '-p',
        f'camera_rate_hz:={float(camera_hz)}',
        '-p',
        ros_param_arg('camera_profile', str(profile)),
    ]


def sim_command(seed: int, params: Mapping[str, object]) -> list[str]:
    """
    Command line that starts ``sim_node`` at ``seed`` with the extra ``params``.

    ``camera_profile`` (default ``small``) gives the defaults of the image size and the camera
    rate.
    """
    p = dict(params)
    profile = camera_profile(str(p.pop('camera_profile', DEFAULT_PROFILE)))
    default = profile.scene()
    scene = SceneConfig(
        image_width=int(number_param('image_width', p.pop('image_width', default.image_width))),
        image_height=int(
            number_param('image_height', p.pop('image_height', default.image_height))
        ),
    )
    camera_hz = number_param('camera_rate_hz', p.pop('camera_rate_hz', profile.rate_hz))
    p.pop('seed', None)
    cmd = sim_node_command(seed, scene, camera_hz, profile.name)
    for name, value in p.items():
        cmd += ['-p', ros_param_arg(name, value)]
    return cmd


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGINT, then SIGKILL after ``timeout``; always reaps the process."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


def log_tail(path: Path, max_chars: int = 4000) -> str:
    """Return the last ``max_chars`` characters of a log file ('' when unreadable)."""
    try:
        with open(path, 'rb') as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_chars))
            return f.read().decode('utf-8', errors='replace')
    except OSError:
        return ''


@dataclass
class ChildProcess:
    """A node started as a child process, its stdout + stderr going to ``log``."""

    name: str
    cmd: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        """Start the process (environment: this process's, unbuffered output)."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log, 'wb')
        env = {**os.environ, 'PYTHONUNBUFFERED': '1', 'RCUTILS_LOGGING_BUFFERED_STREAM': '0'}
        self.proc = subprocess.Popen(
            self.cmd, stdout=self._log_file, stderr=subprocess.STDOUT, env=env
        )

    def check_alive(self) -> None:
        """Raise :class:`KinovaPolicyError` with the tail of the log if the process exited."""
        if self.proc is None:
            raise KinovaPolicyError(f'{self.name} was not started')
        rc = self.proc.poll()
        if rc is not None:
            if self._log_file is not None:
                self._log_file.flush()
            raise KinovaPolicyError(
                f'{self.name} exited early with code {rc}; the end of its log {self.log}:\n'
                f'{log_tail(self.log)}'
            )

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGINT, SIGKILL after ``timeout``; return the exit code (None if never started)."""
        try:
            if self.proc is not None:
                stop_process(self.proc, timeout)
                return self.proc.returncode
            return None
        finally:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None

    def info(self) -> ProcessInfo:
        """Return pid, exit code (None while running or never started) and log file name."""
        return {
            'pid': self.proc.pid if self.proc else None,
            'returncode': self.proc.returncode if self.proc else None,
            'log': self.log.name,
        }


class ProcessGroup:
    """
    Several child processes supervised together: started in order, stopped in reverse.

    ``check_alive()`` raises for the first one that exited; ``stop()`` stops every one
    whatever happens (also when used as a context manager).
    """

    def __init__(self, children: Sequence[ChildProcess]) -> None:
        self.children = list(children)

    def start(self) -> None:
        """Start every process, in order."""
        for child in self.children:
            child.start()

    def check_alive(self) -> None:
        """Raise :class:`KinovaPolicyError` (with its log) if any process exited."""
        for child in self.children:
            child.check_alive()

    def stop(self) -> None:
        """Stop every process, the last started first (all of them, even if one fails)."""
        errors: list[BaseException] = []
        for child in reversed(self.children):
            try:
                child.stop()
            except BaseException as err:  # stop the others first, then re-raise
                errors.append(err)
        if errors:
            raise errors[0]

    def info(self) -> dict[str, ProcessInfo]:
        """Return name -> pid, exit code and log name of every process."""
        return {child.name: child.info() for child in self.children}

    def __enter__(self) -> 'ProcessGroup':
        """Start every process (stopping those started if one fails to start)."""
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop every process."""
        self.stop()
