"""
Clean exits of the simulator's node processes: SIGINT and SIGTERM at any moment give code 0.

Each case starts the real process(es) (``python -m ...`` as ``dds_eval`` and ``record_demos
--via-dds`` start them), sends the signal at one moment — during start-up (imports), while
publishing, or while a commanded trajectory runs (``sim_expert`` commanding ``sim_node``) —
and asserts exit code 0 and no traceback in the output. Also the spin loop itself, in process.
"""

from collections.abc import Iterator
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

from kinova_policy_ros.sim.ros import node_runner
import pytest
import rclpy
from rclpy.node import Node

SIM = 'kinova_policy_ros.sim.ros.sim_node'
EXPERT = 'kinova_policy_ros.sim.ros.expert_node'
DEADLINE_S = 60.0


class Proc:
    """A node process with its output in a file."""

    def __init__(self, module: str, log: Path) -> None:
        self.log = log
        self._file = open(log, 'wb')
        self.popen = subprocess.Popen(
            [sys.executable, '-m', module],
            stdout=self._file,
            stderr=subprocess.STDOUT,
            env={**os.environ, 'PYTHONUNBUFFERED': '1', 'RCUTILS_LOGGING_BUFFERED_STREAM': '0'},
        )

    def text(self) -> str:
        return self.log.read_text(errors='replace')

    def wait_for_text(self, needle: str) -> None:
        end = time.monotonic() + DEADLINE_S
        while needle not in self.text():
            assert self.popen.poll() is None, f'exited early:\n{self.text()[-2000:]}'
            assert time.monotonic() < end, f'no {needle!r} in:\n{self.text()[-2000:]}'
            time.sleep(0.05)

    def stop(self, sig: int) -> tuple[int, str]:
        self.popen.send_signal(sig)
        try:
            rc = self.popen.wait(timeout=DEADLINE_S)
        finally:
            if self.popen.poll() is None:
                self.popen.kill()
                self.popen.wait()
            self._file.close()
        return rc, self.text()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[dict[str, Proc]]:
    started: dict[str, Proc] = {}
    yield started
    for p in started.values():
        if p.popen.poll() is None:
            p.popen.kill()
            p.popen.wait()


def _assert_clean(rc: int, out: str, name: str) -> None:
    assert rc == 0, f'{name} exited with {rc}:\n{out[-3000:]}'
    assert 'Traceback' not in out and 'RCLError' not in out, out[-3000:]


SIGNALS = [pytest.param(signal.SIGINT, id='SIGINT'), pytest.param(signal.SIGTERM, id='SIGTERM')]


@pytest.mark.dds
@pytest.mark.slow
@pytest.mark.parametrize('sig', SIGNALS)
@pytest.mark.parametrize(
    ('module', 'moment'),
    [
        (SIM, 'start-up'),
        (SIM, 'publishing'),
        (EXPERT, 'start-up'),
        (EXPERT, 'idle'),
    ],
)
def test_a_node_exits_0_without_traceback(
    module: str, moment: str, sig: int, procs: dict[str, Proc], tmp_path: Path
):
    p = procs['node'] = Proc(module, tmp_path / 'node.log')
    if moment == 'start-up':
        time.sleep(0.2)  # importing numpy / MuJoCo / rclpy
    elif moment == 'publishing':
        p.wait_for_text('simulated Gen3 ready')
        time.sleep(0.5)
    else:
        time.sleep(3.0)  # node built and spinning, nothing to plan
        assert p.popen.poll() is None, p.text()
    rc, out = p.stop(sig)
    _assert_clean(rc, out, module)


@pytest.mark.dds
@pytest.mark.slow
@pytest.mark.parametrize('sig', SIGNALS)
def test_both_exit_0_while_a_commanded_trajectory_runs(
    sig: int, procs: dict[str, Proc], tmp_path: Path
):
    sim = procs['sim'] = Proc(SIM, tmp_path / 'sim.log')
    expert = procs['expert'] = Proc(EXPERT, tmp_path / 'expert.log')
    expert.wait_for_text('commanded a')  # a multi-second reach is now being followed
    time.sleep(0.3)
    for name, p in (('sim_expert', expert), ('sim_node', sim)):
        rc, out = p.stop(sig)
        _assert_clean(rc, out, name)


def test_spin_loop_returns_when_stopped_and_the_context_is_shut_down_after():
    context = rclpy.Context()
    rclpy.init(context=context)
    node = Node('runner_test', context=context)
    ticks: list[int] = []
    node.create_timer(0.01, lambda: ticks.append(1))
    try:
        node_runner.spin_until_stopped(node, lambda: len(ticks) >= 5)
        assert len(ticks) == 5  # stopped between callbacks, right after the fifth
        assert context.ok()  # the loop never shuts the context down itself
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    assert not context.ok()


def test_run_node_reports_a_bad_parameter_with_code_1(capsys: pytest.CaptureFixture[str]):
    from kinova_policy_ros.core.errors import ConfigError

    def factory() -> Node:
        raise ConfigError('parameter x must be > 0, got 0')

    assert node_runner.run_node(factory, 'test_node', []) == 1
    assert 'test_node: parameter x must be > 0' in capsys.readouterr().err
    assert not rclpy.ok()
