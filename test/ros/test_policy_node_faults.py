"""
Faults over DDS against the running policy node (docs/safety.md, "Faults over DDS").

Streams that stop and return, bursts, duplicates and reordered stamps, the controller's
subscription going away and coming back, ``use_sim_time`` with ``/clock`` jumping back, bad
checkpoints at start-up and SIGTERM during inference. "No command while X" reads the node's
``commands_published`` counter across consecutive ``/diagnostics`` reports in state X; waits have
generous deadlines, nothing asserts on how fast anything happens. Every command received is
checked with :func:`kinova_policy_ros.testing.invariants.command_violations`.
"""

from collections.abc import Callable, Iterator
from pathlib import Path
import signal
import threading
import time

from builtin_interfaces.msg import Time
from helpers import node_checkpoint, PolicyNodePeer, PolicyNodeProcess
from kinova_policy_ros.core import image_codec
from kinova_policy_ros.core.stamps import split_ns, stamp_to_ns
from kinova_policy_ros.ros.node_params import default_values, make_limits
from kinova_policy_ros.testing.invariants import command_violations
import numpy as np
import pytest
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState

pytestmark = [pytest.mark.dds, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PARAMS_FILE = ROOT / 'config' / 'policy.yaml'
JOINTS = [f'joint_{i}' for i in range(1, 8)]
RGB_TOPIC = '/camera/color/image_raw'
DEPTH_TOPIC = '/camera/depth/image_raw'
DT = 0.05
Q_MEAS = np.array([0.1, 0.3, -3.0, -2.2, 0.05, 0.9, 1.5])
SETTLED = 4  # reports in a state: the change, then periodic ones a full period later
LIMITS = make_limits(
    *(default_values()[k] for k in ('position_lower', 'position_upper', 'velocity_limits')),
    default_values()['continuous_joints'],
    default_values()['velocity_scale'],
    JOINTS,
)


def _checkpoint(out: Path, **overrides: object) -> Path:
    return node_checkpoint(out, seed=3, **overrides)


def _peer(prefix: str) -> PolicyNodePeer:
    """Return a peer on topics of its own (``/<prefix>/...``), out of the module feeder's reach."""
    return PolicyNodePeer(
        f'/{prefix}/rgb', f'/{prefix}/depth', f'/{prefix}/joint_trajectory', f'{prefix}: policy',
        f'/{prefix}/joint_states',
    )


def _own_topics(prefix: str) -> tuple[str, ...]:
    return tuple(
        f'{p}_topic:=/{prefix}/{t}'
        for p, t in (('rgb', 'rgb'), ('depth', 'depth'), ('joint_states', 'joint_states'),
                     ('command', 'joint_trajectory'))
    )  # fmt: skip


def _node(ckpt: Path, *params: str, name: str = 'kinova_policy') -> PolicyNodeProcess:
    args = ['--params-file', str(PARAMS_FILE), '-r', f'__node:={name}']
    for p in (f'checkpoint:={ckpt}', 'device:=cpu', 'action_horizon:=2', 'max_obs_age_s:=0.3',
              'enabled_on_start:=true', 'diagnostics_period_s:=0.3', *params):  # fmt: skip
        args += ['-p', p]
    return PolicyNodeProcess(*args)


def _joints(q: np.ndarray) -> JointState:
    msg = JointState()
    msg.name = [*reversed(JOINTS), 'finger_joint']
    msg.position = [*q[::-1].tolist(), 0.2]
    return msg


def _near(msg, q: np.ndarray) -> bool:
    p = msg.points[0]
    t0 = stamp_to_ns(p.time_from_start) * 1e-9
    q0 = np.clip(q, LIMITS.lower, LIMITS.upper)
    return bool(np.all(np.abs(np.asarray(p.positions) - q0) <= LIMITS.max_velocity * t0 + 1e-6))


class Feeder:
    """Publishes the current colour, depth and joints at 30 Hz (None: that stream is stopped)."""

    def __init__(self, peer: PolicyNodePeer, clock: Callable[[], Time] | None = None) -> None:
        self.peer = peer
        self.clock = clock or (lambda: peer.node.get_clock().now().to_msg())
        rng = np.random.default_rng(0)
        self.lock = threading.Lock()
        self.msgs: dict[str, Image | JointState | None] = {
            'rgb': image_codec.fill_image_msg(
                Image(), image_codec.encode_rgb8(rng.integers(0, 256, (60, 80, 3), np.uint8))
            ),
            'depth': image_codec.fill_image_msg(
                Image(), image_codec.encode_depth(np.full((60, 80), 1.1, np.float32))
            ),
            'joints': _joints(Q_MEAS),
        }
        self.stored = dict(self.msgs)
        self.q: list[np.ndarray] = [Q_MEAS]  # every joint position published
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0 / 30.0):
            stamp = self.clock()
            with self.lock:
                items = [(k, m) for k, m in self.msgs.items() if m is not None]
            for key, msg in items:
                msg.header.stamp = stamp
                self.peer.publish(key, msg)

    def put(self, key: str, msg: Image | JointState | None) -> None:
        with self.lock:
            self.msgs[key] = msg

    def restore(self, key: str) -> None:
        self.put(key, self.stored[key])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def _values(status) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def settled(peer: PolicyNodePeer, predicate, since: int) -> list:
    """Wait for SETTLED reports from the first matching one after ``since``; all must match."""

    def run() -> list:
        reports = peer.reports_since(since)
        first = next((i for i, (s, _) in enumerate(reports) if predicate(s)), len(reports))
        return reports[first:]

    peer.wait(lambda: len(run()) >= SETTLED, 30.0, 'settled reports')
    reports = run()
    assert all(predicate(s) for s, _ in reports), [s.message for s, _ in reports]
    return reports


def assert_no_command_in(reports: list) -> None:
    published = [_values(s)['commands_published'] for s, _ in reports]
    assert len(set(published)) == 1, f'commands published in {reports[0][0].message}: {published}'
    received = [n for _, n in reports[2:]]
    assert len(set(received)) == 1, f'commands received: {received}'


def assert_safe(commands: list, candidates: list[np.ndarray]) -> None:
    for i, msg in enumerate(commands):
        near = [q for q in candidates if _near(msg, q)]
        assert near, f'command {i}: first point from no measured state'
        assert not command_violations(msg, JOINTS, LIMITS, near[0]), command_violations(
            msg, JOINTS, LIMITS, near[0]
        )


# ------------------------------------------------------------------ one node, several faults


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp('faults') / 'ckpt')


@pytest.fixture(scope='module')
def peer() -> Iterator[PolicyNodePeer]:
    p = PolicyNodePeer()
    try:
        yield p
    finally:
        p.close()


@pytest.fixture(scope='module')
def feeder(peer: PolicyNodePeer) -> Iterator[Feeder]:
    f = Feeder(peer)
    try:
        yield f
    finally:
        f.close()


@pytest.fixture(scope='module')
def node(checkpoint: Path, peer: PolicyNodePeer, feeder: Feeder) -> Iterator[PolicyNodeProcess]:
    proc = _node(checkpoint)
    try:
        proc.wait_ready()
        yield proc
    finally:
        rc = proc.stop(signal.SIGTERM)
        assert_safe(peer.commands_since(0), feeder.q)  # every command of the module
        assert rc == 0, proc.output
        assert 'Traceback' not in proc.output, proc.output


@pytest.fixture
def running(node: PolicyNodeProcess, peer: PolicyNodePeer, feeder: Feeder) -> PolicyNodePeer:
    for key in ('rgb', 'depth', 'joints'):
        feeder.restore(key)
    n = peer.num_commands()
    peer.wait(lambda: peer.num_commands() > n + 1, 30.0, 'commands')
    return peer


@pytest.mark.parametrize(
    ('key', 'topic'),
    [('depth', DEPTH_TOPIC), ('joints', '/joint_states'), ('rgb', RGB_TOPIC)],
)
def test_a_stream_that_stops_stops_commands_names_the_topic_and_commands_resume(
    running: PolicyNodePeer, feeder: Feeder, node: PolicyNodeProcess, key: str, topic: str
):
    since = running.mark()
    feeder.put(key, None)
    reports = settled(running, lambda s: s.message.startswith('stale input'), since)
    assert_no_command_in(reports)
    for status, _ in reports:
        others = {RGB_TOPIC, DEPTH_TOPIC, '/joint_states'} - {topic}
        assert topic in status.message and not any(f'{o} (' in status.message for o in others)
    n = running.num_commands()
    feeder.restore(key)
    running.wait(lambda: running.num_commands() > n, 30.0, 'commands after the stream returned')
    assert node.proc.poll() is None


def test_bursts_and_duplicates_are_taken_and_commands_use_the_newest(
    running: PolicyNodePeer, feeder: Feeder, node: PolicyNodeProcess
):
    # 300 messages on each topic at once, every one published twice; the last ones at q_new.
    q_new = Q_MEAS + np.array([0, 0.4, 0, 0.8, 0, 0, 0])
    feeder.put('joints', None)
    stamp = running.node.get_clock().now().to_msg()
    images = [feeder.stored['rgb'], feeder.stored['depth']]
    for i in range(300):
        q = q_new if i == 299 else Q_MEAS + np.array([0, 0, 0, 0.8 * i / 300, 0, 0, 0])
        for key, msg in (('rgb', images[0]), ('depth', images[1]), ('joints', _joints(q))):
            msg.header.stamp = stamp
            running.publish(key, msg)
            running.publish(key, msg)  # duplicate
    feeder.q += [Q_MEAS + np.array([0, 0, 0, 0.8 * i / 300, 0, 0, 0]) for i in range(299)]
    feeder.q.append(q_new)
    n = running.num_commands()
    held = _joints(q_new)
    feeder.stored['joints_new'] = held
    feeder.put('joints', held)
    running.wait(
        lambda: sum(_near(m, q_new) for m in running.commands_since(n)) >= 3, 30.0,
        'commands from the newest joint state',
    )  # fmt: skip
    assert node.proc.poll() is None


def test_an_older_stamp_after_a_newer_one_is_dropped(
    running: PolicyNodePeer, feeder: Feeder, node: PolicyNodeProcess
):
    # Two joint publishers: the newest stamp says q_new; a stale one keeps sending older
    # stamps at q_old after it. The node keeps q_new (dropped: older than the held sample).
    q_new = Q_MEAS + np.array([0, 0.2, 0, 0.6, 0, 0, 0])
    q_old = Q_MEAS + np.array([0, -0.2, 0, 1.6, 0, 0, 0])
    feeder.q += [q_new, q_old]
    feeder.put('joints', None)
    old = _joints(q_old)
    new = _joints(q_new)
    stop = threading.Event()

    def reordered() -> None:
        while not stop.wait(1.0 / 60.0):
            now_ns = running.node.get_clock().now().nanoseconds
            new.header.stamp = Time(sec=split_ns(now_ns)[0], nanosec=split_ns(now_ns)[1])
            running.publish('joints', new)
            old_ns = now_ns - 100_000_000  # 0.1 s older, sent after the newer one
            old.header.stamp = Time(sec=split_ns(old_ns)[0], nanosec=split_ns(old_ns)[1])
            running.publish('joints', old)

    thread = threading.Thread(target=reordered, daemon=True)
    n = running.num_commands()
    thread.start()
    try:
        running.wait(
            lambda: sum(_near(m, q_new) for m in running.commands_since(n)) >= 4, 30.0,
            'commands from the newest stamp',
        )  # fmt: skip
        late = running.commands_since(n)
    finally:
        stop.set()
        thread.join(5)
    # Skip the commands planned before the switch (from Q_MEAS); none from the older stamp.
    assert not any(_near(m, q_old) for m in late)
    assert node.proc.poll() is None


def test_the_command_subscriber_goes_away_and_a_new_one_gets_commands(
    running: PolicyNodePeer, node: PolicyNodeProcess
):
    running.drop_command_subscription()
    running.wait(
        lambda: running.node.count_subscribers(running.command_topic) == 0, 30.0, 'unmatched'
    )
    since = running.mark()
    # The node keeps planning and publishing with no one listening.
    first = running.wait_report(lambda s: s.message == 'running', since)
    published = int(_values(running.reports_since(first - 1)[0][0])['commands_published'])
    running.wait_report(
        lambda s: int(_values(s).get('commands_published', '0')) > published + 2, first
    )
    n = running.num_commands()
    running._command_sub = running.subscribe_commands()
    running.wait(lambda: running.num_commands() > n + 2, 30.0, 'commands to the new subscriber')
    assert node.proc.poll() is None


# ------------------------------------------------------------------------ use_sim_time, /clock


class SimClock:
    """Publishes /clock at 100 Hz; sim time advances with wall time from ``start_s``."""

    def __init__(self, peer: PolicyNodePeer, start_s: float) -> None:
        self.pub = peer.node.create_publisher(Clock, '/clock', 10)
        self.lock = threading.Lock()
        self.jump(start_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def jump(self, to_s: float) -> None:
        with self.lock:
            self._origin = (time.monotonic(), to_s)

    def now(self) -> Time:
        with self.lock:
            wall0, sim0 = self._origin
        sec, nanosec = split_ns(round((sim0 + time.monotonic() - wall0) * 1e9))
        return Time(sec=sec, nanosec=nanosec)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.pub.publish(Clock(clock=self.now()))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def test_sim_time_jumping_back_stops_commands_until_fresh_input(
    tmp_path: Path, checkpoint: Path
):
    peer = _peer('sim_policy')
    clock = SimClock(peer, start_s=1000.0)
    feeder = Feeder(peer, clock=clock.now)
    proc = _node(checkpoint, 'use_sim_time:=true', *_own_topics('sim_policy'), name='sim_policy')
    try:
        proc.wait_ready()
        peer.wait(lambda: peer.num_commands() > 2, 30.0, 'commands on sim time')
        # Inputs stop (every frame in flight received: each input reported stale by its age),
        # then the clock goes back 900 s: the frames held were received "later".
        since = peer.mark()
        for key in ('rgb', 'depth', 'joints'):
            feeder.put(key, None)
        peer.wait_report(
            lambda s: 'older than' in s.message and s.message.count('/sim_policy/') == 3, since
        )
        since = peer.mark()
        clock.jump(100.0)
        reports = settled(peer, lambda s: 'the clock went back' in s.message, since)
        assert_no_command_in(reports)
        assert all(f'/sim_policy/{t} (' in reports[0][0].message for t in ('rgb', 'depth'))
        assert '/sim_policy/joint_states (' in reports[0][0].message
        # Fresh input after the jump: commands resume.
        n = peer.num_commands()
        for key in ('rgb', 'depth', 'joints'):
            feeder.restore(key)
        peer.wait(lambda: peer.num_commands() > n + 1, 30.0, 'commands after the jump')
        assert proc.proc.poll() is None
        assert_safe(peer.commands_since(0), feeder.q)
    finally:
        feeder.close()
        clock.close()
        rc = proc.stop(signal.SIGTERM)
        peer.close()
    assert rc == 0, proc.output
    assert 'Traceback' not in proc.output, proc.output


# ---------------------------------------------------------------------------- start-up faults


def _cut(ckpt: Path, out: Path) -> Path:
    out.mkdir()
    (out / 'config.json').write_bytes((ckpt / 'config.json').read_bytes())
    weights = (ckpt / 'model.safetensors').read_bytes()
    (out / 'model.safetensors').write_bytes(weights[: len(weights) // 2])
    return out


def _six_joints(out: Path) -> Path:
    """Return a checkpoint of another arm (6 joints, other names) for a 7-joint robot."""
    return _checkpoint(out, joint_names=[f'left_joint_{i}' for i in range(1, 7)])


@pytest.mark.parametrize(
    ('make', 'params', 'names'),
    [
        (lambda c, t: t / 'missing', (), ['missing']),
        (lambda c, t: _cut(c, t / 'cut'), (), ['cut/model.safetensors']),
        (lambda c, t: c, ('joint_names:=[a, b, c, d, e, f, g, h]',), ["'joint_names'"]),
        (lambda c, t: _six_joints(t / 'six'), (f'joint_names:=[{", ".join(JOINTS)}]',),
         ['six/config.json', "'joint_names'", 'left_joint_6']),
    ],
    ids=['missing', 'truncated', 'joint-count', 'other-arm'],
)  # fmt: skip
def test_a_bad_checkpoint_at_start_up_is_one_clear_error_and_exit_1(
    checkpoint: Path, tmp_path: Path, make, params: tuple[str, ...], names: list[str]
):
    ckpt = make(checkpoint, tmp_path)
    proc = _node(ckpt, *params, name='kinova_policy_bad')
    try:
        proc.proc.wait(90)
    finally:
        proc.stop(signal.SIGKILL)
    assert proc.proc.returncode == 1, proc.output
    errors = [ln for ln in proc.lines if 'cannot start' in ln]
    assert len(errors) == 1, proc.output
    assert all(n in errors[0] for n in names), errors[0]
    assert 'Traceback' not in proc.output, proc.output


# ------------------------------------------------------------------ SIGTERM during inference


def test_sigterm_during_inference_exits_0(tmp_path: Path):
    # A model of ~0.3 s per prediction on one thread, planning on every tick: the control
    # thread is inside predict() nearly all the time once it commands.
    ckpt = _checkpoint(tmp_path / 'big', d_model=256, dim_feedforward=2048, num_encoder_layers=6)
    peer = _peer('big')
    feeder = Feeder(peer)
    proc = _node(ckpt, *_own_topics('big'), 'action_horizon:=1', 'max_obs_age_s:=5.0', name='big')
    try:
        proc.wait_ready()
        peer.wait(lambda: peer.num_commands() >= 1, 60.0, 'a first command')
        proc.proc.send_signal(signal.SIGTERM)
        proc.proc.wait(30)
    finally:
        feeder.close()
        rc = proc.stop(signal.SIGKILL)
        peer.close()
    assert rc == 0, proc.output
    assert 'Traceback' not in proc.output, proc.output
