"""
SIGINT and SIGTERM end ``policy_node`` with exit code 0 and no traceback, at any moment.

The moments: during start-up while torch is being imported or the checkpoint loaded (torch's
libraries are mapped into the process, "ready" not yet printed), right after "ready", and
while the node is commanding (inputs published, commands received).
"""

from collections.abc import Iterator
from pathlib import Path
import signal
import threading
import time

from helpers import node_checkpoint, PolicyNodePeer, PolicyNodeProcess
from kinova_policy_ros.core import image_codec
import numpy as np
import pytest
from sensor_msgs.msg import Image, JointState

pytestmark = [pytest.mark.dds, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PARAMS_FILE = ROOT / 'config' / 'policy.yaml'
PREFIX = '/signals'


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return node_checkpoint(tmp_path_factory.mktemp('signals') / 'ckpt', seed=3)


@pytest.fixture(scope='module')
def peer() -> Iterator[PolicyNodePeer]:
    p = PolicyNodePeer(
        f'{PREFIX}/rgb', f'{PREFIX}/depth', f'{PREFIX}/joint_trajectory',
        'kinova_policy_signals: policy', f'{PREFIX}/joint_states',
    )  # fmt: skip
    try:
        yield p
    finally:
        p.close()


def _start(checkpoint: Path) -> PolicyNodeProcess:
    args = ['--params-file', str(PARAMS_FILE), '-r', '__node:=kinova_policy_signals']
    for p in (f'checkpoint:={checkpoint}', 'device:=cpu', 'enabled_on_start:=true',
              f'rgb_topic:={PREFIX}/rgb', f'depth_topic:={PREFIX}/depth',
              f'joint_states_topic:={PREFIX}/joint_states',
              f'command_topic:={PREFIX}/joint_trajectory', 'max_obs_age_s:=0.5'):  # fmt: skip
        args += ['-p', p]
    return PolicyNodeProcess(*args)


def _torch_loaded(pid: int) -> bool:
    try:
        return 'torch' in Path(f'/proc/{pid}/maps').read_text()
    except OSError:
        return False


def _feed(peer: PolicyNodePeer, stop: threading.Event) -> None:
    rng = np.random.default_rng(0)
    rgb = image_codec.fill_image_msg(
        Image(), image_codec.encode_rgb8(rng.integers(0, 256, (60, 80, 3), np.uint8))
    )
    depth = image_codec.fill_image_msg(
        Image(), image_codec.encode_depth(np.full((60, 80), 1.0, np.float32))
    )
    joints = JointState(name=[f'joint_{i}' for i in range(1, 8)], position=[0.1] * 7)
    while not stop.wait(1.0 / 30.0):
        stamp = peer.node.get_clock().now().to_msg()
        for key, msg in (('rgb', rgb), ('depth', depth), ('joints', joints)):
            msg.header.stamp = stamp
            peer.publish(key, msg)


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM], ids=['SIGINT', 'SIGTERM'])
@pytest.mark.parametrize('moment', ['loading', 'ready', 'commanding'])
def test_a_stop_signal_at_any_moment_exits_0_without_traceback(
    checkpoint: Path, peer: PolicyNodePeer, moment: str, sig: int
):
    stop = threading.Event()
    feeder = threading.Thread(target=_feed, args=(peer, stop), daemon=True)
    proc = _start(checkpoint)
    try:
        if moment == 'loading':
            peer.wait(lambda: _torch_loaded(proc.proc.pid), 60.0, 'torch being imported')
            assert not any('ready:' in ln for ln in proc.lines), 'ready before torch was seen'
        else:
            proc.wait_ready()
        if moment == 'commanding':
            n = peer.num_commands()
            feeder.start()
            peer.wait(lambda: peer.num_commands() > n + 1, 60.0, 'commands')
        proc.proc.send_signal(sig)
        proc.proc.wait(30)
    finally:
        stop.set()
        if feeder.is_alive():
            feeder.join(5)
        rc = proc.stop(signal.SIGKILL)
    assert rc == 0, proc.output
    assert 'Traceback' not in proc.output, proc.output


def _importing(pid: int) -> bool:
    """Whether the node is importing its modules: extensions loaded, rclpy's not yet."""
    try:
        maps = Path(f'/proc/{pid}/maps').read_text()
    except OSError:
        return False
    return '.cpython-' in maps and '_rclpy_pybind11' not in maps


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM], ids=['SIGINT', 'SIGTERM'])
def test_a_stop_signal_while_importing_exits_0_without_traceback(checkpoint: Path, sig: int):
    proc = _start(checkpoint)
    try:
        end = time.monotonic() + 30.0
        while not _importing(proc.proc.pid) and time.monotonic() < end:
            time.sleep(0.0005)
        assert _importing(proc.proc.pid), 'the import phase was not seen'
        proc.proc.send_signal(sig)
        proc.proc.wait(30)
    finally:
        rc = proc.stop(signal.SIGKILL)
    assert rc == 0, proc.output
    assert 'Traceback' not in proc.output, proc.output
