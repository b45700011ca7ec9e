"""Small shared helpers for the tests (import as ``from helpers import ...``)."""

from collections.abc import Callable, Iterator
import contextlib
import os
from pathlib import Path
import signal
import subprocess
import sys
import threading
import time

from kinova_policy_ros.data.schema import Episode
from kinova_policy_ros.testing.synthetic import make_episode, make_random_checkpoint


def episode_arrays(seed: int = 0, num_frames: int = 12, hw: tuple[int, int] = (16, 20)) -> dict:
    """Return a valid episode as a dict of arrays (copies: safe to corrupt)."""
    return {k: v.copy() for k, v in make_episode(seed, num_frames, hw).to_arrays().items()}


def small_episode(seed: int = 0, num_frames: int = 12, hw: tuple[int, int] = (16, 20)) -> Episode:
    return make_episode(seed, num_frames, hw)


def node_checkpoint(out: Path, seed: int, **overrides: object) -> Path:
    """
    Write a random checkpoint small enough for the policy-node tests (24x32 input, dt 0.05 s).

    ``overrides`` replace the small model sizes or add ``make_random_checkpoint`` arguments.
    """
    small: dict[str, object] = {
        'd_model': 32, 'dim_feedforward': 64, 'conv_channels': (8, 16), 'img_feat_dim': 16,
        'q_feat_dim': 16,
    }  # fmt: skip
    return make_random_checkpoint(
        out, image_hw=(24, 32), dt=0.05, seed=seed, **{**small, **overrides}
    )


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0, period: float = 0.01) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` s pass; return its last value."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(period)
    return bool(predicate())


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


class PolicyNodePeer:
    """
    Camera, robot and controller of a policy node under test, in this process (ROS imported late).

    Publishes what :meth:`publish` is given on ``rgb`` / ``depth`` / ``joints`` (``compressed``:
    ``<rgb>/compressed``), records every command (and the ``/diagnostics`` reports, each with the
    number of commands received when it arrived); an own ROS context and executor thread.
    """

    def __init__(
        self,
        rgb_topic: str = '/camera/color/image_raw',
        depth_topic: str = '/camera/depth/image_raw',
        command_topic: str = '/joint_trajectory_controller/joint_trajectory',
        status_name: str = 'kinova_policy: policy',
        joints_topic: str = '/joint_states',
    ) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CompressedImage, Image, JointState
        from trajectory_msgs.msg import JointTrajectory

        self.status_name = status_name
        self.command_topic = command_topic
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('policy_node_peer', context=self.context)
        n = self.node
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.pubs = {
            'rgb': n.create_publisher(Image, rgb_topic, qos),
            'compressed': n.create_publisher(CompressedImage, rgb_topic + '/compressed', qos),
            'depth': n.create_publisher(Image, depth_topic, qos),
            'joints': n.create_publisher(JointState, joints_topic, qos),
        }
        self.lock = threading.Lock()
        self.commands: list = []
        self.diagnostics: list = []  # (DiagnosticStatus, commands received when it arrived)
        self._command_type = JointTrajectory
        self._command_sub = self.subscribe_commands()
        n.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 50)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(n)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def subscribe_commands(self) -> object:
        """(Re)create the command subscription (reliable, like a trajectory controller)."""
        return self.node.create_subscription(
            self._command_type, self.command_topic, self._on_command, 50
        )

    def drop_command_subscription(self) -> None:
        """Destroy the command subscription (the controller went away)."""
        if self._command_sub is not None:
            self.node.destroy_subscription(self._command_sub)
            self._command_sub = None

    def _on_command(self, msg: object) -> None:
        with self.lock:
            self.commands.append(msg)

    def _on_diag(self, msg: object) -> None:
        with self.lock:
            for status in msg.status:  # type: ignore[attr-defined]
                if status.name == self.status_name:
                    self.diagnostics.append((status, len(self.commands)))

    def publish(self, key: str, msg: object) -> None:
        self.pubs[key].publish(msg)

    def num_commands(self) -> int:
        with self.lock:
            return len(self.commands)

    def commands_since(self, start: int) -> list:
        with self.lock:
            return list(self.commands[start:])

    def mark(self) -> int:
        with self.lock:
            return len(self.diagnostics)

    def reports_since(self, since: int) -> list:
        with self.lock:
            return list(self.diagnostics[since:])

    def last_message(self) -> str:
        with self.lock:
            return self.diagnostics[-1][0].message if self.diagnostics else '(no report)'

    def wait(self, predicate, timeout: float = 20.0, what: str = '') -> None:
        """Wait for ``predicate()`` (polling); fail naming ``what`` and the last report."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return
            time.sleep(0.005)
        assert predicate(), f'{what} not within {timeout} s; last report: {self.last_message()}'

    def wait_report(self, predicate, since: int, timeout: float = 20.0, what: str = '') -> int:
        """Wait for a report after ``since`` that matches; return the index after it."""
        found: list[int] = []

        def match() -> bool:
            with self.lock:
                for i in range(since, len(self.diagnostics)):
                    if predicate(self.diagnostics[i][0]):
                        found.append(i)
                        return True
            return False

        self.wait(match, timeout, what or 'a matching report')
        return found[0] + 1

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=5.0)
        self.node.destroy_node()
        import rclpy

        rclpy.try_shutdown(context=self.context)
        self.thread.join(5)


def curve_outcome(seed: int, distance: float) -> dict:
    """Return one closed-loop episode as the learning curve records it (an ``Outcome``)."""
    return {
        'seed': seed,
        'final_distance': distance,
        'success_3cm': distance <= 0.03,
        'success_5cm': distance <= 0.05,
    }


def curve_results() -> dict[tuple[int, int], list[dict]]:
    """Hand-made ``{(demonstrations, train_seed): episodes}``, given out of order on purpose."""
    o = curve_outcome
    return {
        (100, 1): [o(0, 0.01), o(1, 0.02), o(2, 0.04), o(3, 0.30)],
        (50, 1): [o(0, 0.04), o(1, 0.50), o(2, 0.20), o(3, 0.10)],
        (100, 0): [o(0, 0.01), o(1, 0.01), o(2, 0.02), o(3, 0.045)],
        (50, 0): [o(0, 0.02), o(1, 0.06), o(2, 0.30), o(3, 0.40)],
    }
