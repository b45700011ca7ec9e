"""Node processes (``sim.ros.processes``): command lines, liveness, logs, stopping."""

from pathlib import Path
import sys

from kinova_policy_ros.core.errors import ConfigError, KinovaPolicyError
from kinova_policy_ros.sim.mjcf import SceneConfig
from kinova_policy_ros.sim.ros import processes
import pytest


def test_ros_parameter_arguments_keep_their_type():
    assert processes.ros_param_arg('enabled_on_start', False) == 'enabled_on_start:=false'
    assert processes.ros_param_arg('camera_rate_hz', 20.0) == 'camera_rate_hz:=20.0'
    assert processes.ros_param_arg('x', 1e-5) == 'x:=1.0e-05'
    assert processes.ros_param_arg('seed', 3) == 'seed:=3'
    assert processes.ros_param_arg('device', 'cpu') == 'device:="cpu"'
    assert processes.ros_param_arg('v', [0.5, 1.0]) == 'v:=[0.5, 1.0]'
    with pytest.raises(ConfigError, match='finite'):
        processes.ros_param_arg('x', float('nan'))
    with pytest.raises(ConfigError, match='unsupported'):
        processes.ros_param_arg('x', {'a': 1})
    cmd = processes.sim_command(4, {'image_width': 64, 'start_noise': 0.0})
    assert 'seed:=4' in cmd and 'image_width:=64' in cmd and 'start_noise:=0.0' in cmd


def test_node_command_lines():
    cmd = processes.policy_node_command(Path('/ckpt'), {'device': 'cpu', 'velocity_scale': 1.0})
    assert cmd[:3] == [sys.executable, '-m', 'kinova_policy_ros.ros.policy_node']
    assert cmd[3:] == [
        '--ros-args', '-p', 'checkpoint:="/ckpt"', '-p', 'device:="cpu"',
        '-p', 'velocity_scale:=1.0',
    ]
    sim = processes.sim_node_command(9, SceneConfig(image_width=32, image_height=24), 20)
    assert sim[2] == 'kinova_policy_ros.sim.ros.sim_node'
    assert sim[4:] == [
        '-p', 'seed:=9', '-p', 'image_width:=32', '-p', 'image_height:=24',
        '-p', 'camera_rate_hz:=20.0', '-p', 'camera_profile:="small"',
    ]
    # the seed argument wins over a 'seed' parameter; defaults fill the scene
    cmd = processes.sim_command(2, {'seed': 5, 'camera_rate_hz': 10})
    assert 'seed:=2' in cmd and 'seed:=5' not in cmd and 'camera_rate_hz:=10.0' in cmd
    assert 'image_width:=128' in cmd and 'image_height:=96' in cmd
    with pytest.raises(ConfigError, match=r"sim parameter 'image_width'.*True"):
        processes.sim_command(2, {'image_width': True})


def test_log_tail(tmp_path: Path):
    log = tmp_path / 'node.log'
    log.write_bytes(b'a' * 10 + b'end \xff')
    assert processes.log_tail(log, max_chars=5) == 'end \ufffd'
    assert processes.log_tail(log) == 'a' * 10 + 'end \ufffd'
    assert processes.log_tail(tmp_path / 'missing.log') == ''


def _python(code: str) -> list[str]:
    return [sys.executable, '-c', code]


SLEEPER = (
    'import signal, sys, time\n'
    "signal.signal(signal.SIGINT, lambda *a: (print('stopping', flush=True), sys.exit(0)))\n"
    "print('up', flush=True)\n"
    'time.sleep(120)\n'
)


def test_a_child_process_logs_and_stops_on_sigint(tmp_path: Path):
    child = processes.ChildProcess('sleeper', _python(SLEEPER), tmp_path / 'logs' / 's.log')
    with pytest.raises(KinovaPolicyError, match='sleeper was not started'):
        child.check_alive()
    assert child.stop() is None and child.info()['pid'] is None
    child.start()
    child.check_alive()
    from kinova_policy_ros.sim.ros.services import wait_for

    wait_for(lambda: 'up' in processes.log_tail(child.log), 60.0, 'the sleeper to start')
    assert child.stop() == 0
    assert 'stopping' in child.log.read_text()
    info = child.info()
    assert info['returncode'] == 0 and info['log'] == 's.log' and info['pid'] > 0


def test_an_exited_child_is_reported_with_its_log(tmp_path: Path):
    code = "import sys; print('cannot start: no checkpoint', flush=True); sys.exit(3)"
    child = processes.ChildProcess('policy_node', _python(code), tmp_path / 'p.log')
    child.start()
    assert child.proc is not None
    child.proc.wait(timeout=60)
    with pytest.raises(KinovaPolicyError, match='policy_node exited early with code 3') as err:
        child.check_alive()
    assert 'cannot start: no checkpoint' in str(err.value) and 'p.log' in str(err.value)
    assert child.stop() == 3


def test_a_child_that_ignores_sigint_is_killed(tmp_path: Path):
    code = (
        'import signal, time\n'
        'signal.signal(signal.SIGINT, signal.SIG_IGN)\n'
        "print('up', flush=True)\n"
        'time.sleep(120)\n'
    )
    child = processes.ChildProcess('stubborn', _python(code), tmp_path / 'x.log')
    child.start()
    from kinova_policy_ros.sim.ros.services import wait_for

    wait_for(lambda: 'up' in processes.log_tail(child.log), 60.0, 'the process to start')
    assert child.stop(timeout=0.5) == -9  # SIGKILL


def test_a_process_group_starts_in_order_and_stops_everything(tmp_path: Path):
    a = processes.ChildProcess('a', _python(SLEEPER), tmp_path / 'a.log')
    b = processes.ChildProcess('b', _python('import sys; sys.exit(2)'), tmp_path / 'b.log')
    group = processes.ProcessGroup([a, b])
    with pytest.raises(KinovaPolicyError, match='b exited early with code 2'), group:
        assert b.proc is not None
        b.proc.wait(timeout=60)
        group.check_alive()
    info = group.info()
    assert list(info) == ['a', 'b']
    assert info['a']['returncode'] is not None and info['b']['returncode'] == 2
    assert a.proc is not None and a.proc.poll() is not None  # stopped when the block failed


def test_a_group_whose_second_process_cannot_start_stops_the_first(tmp_path: Path):
    a = processes.ChildProcess('a', _python(SLEEPER), tmp_path / 'a.log')
    b = processes.ChildProcess('b', [str(tmp_path / 'no-such-program')], tmp_path / 'b.log')
    with pytest.raises(FileNotFoundError), processes.ProcessGroup([a, b]):
        pass
    assert a.proc is not None and a.proc.poll() is not None
