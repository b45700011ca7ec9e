"""
DDS-level fuzzing of the running policy node: hostile inputs, every command checked.

The node runs as a child process (a tiny random checkpoint, enabled); this process publishes
seeded random (the same on every run) hostile messages interleaved with valid ones on the RGB,
depth and ``/joint_states`` topics and checks every command it receives with
:func:`kinova_policy_ros.testing.invariants.command_violations`.

Each round has three phases, separated by marker messages whose errors the node names on
``/diagnostics`` (so the phases are ordered by what the node reports, not by sleeping):

- **valid**: good colour, depth and joints at ``Q_VALID[r]``; the node must command again;
- **bad colour**: the colour is invalid on every message (any encoding string, size / step /
  data length mismatches, zero and huge sizes, random bytes), depth hostile (NaN / inf /
  negative float depth, which is valid, or invalid), joints hostile (valid ones at ``Q_DURING``,
  invalid ones at ``Q_BAD``). No observation is valid: a command planned from ``Q_DURING`` (or
  ``Q_BAD``) would prove a command from an invalid observation;
- **bad joints**: valid images (odd sizes, NaN depth), joint states valid (shuffled, extra and
  far-out-of-limit values, any velocity/effort length) or invalid (NaN / inf, a missing or
  duplicate arm joint, too few / many positions) at ``Q_BAD``: no command may start near
  ``Q_BAD``.

Every message has a hostile header stamp (zero, now, in the past, going backwards, far future)
except the markers (stamp 0). The first point of a command lies within ``velocity x scale x t0``
of the (clamped) measured position it was planned from, which tells which joint state it used.
"""

from collections.abc import Iterator
from pathlib import Path
import signal
import time

from helpers import node_checkpoint, PolicyNodePeer, PolicyNodeProcess
from kinova_policy_ros.core import image_codec
from kinova_policy_ros.core.stamps import stamp_to_ns
from kinova_policy_ros.ros.inputs import depth_sample, rgb_sample
from kinova_policy_ros.ros.node_params import default_values, make_limits
from kinova_policy_ros.testing.invariants import command_violations
import numpy as np
import pytest
from sensor_msgs.msg import Image, JointState

pytestmark = [pytest.mark.dds, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PARAMS_FILE = ROOT / 'config' / 'policy.yaml'
JOINTS = [f'joint_{i}' for i in range(1, 8)]
EXTRA = ['finger_joint', 'robotiq_85_left_knuckle_joint']
RGB_TOPIC = '/camera/color/image_raw'
DEPTH_TOPIC = '/camera/depth/image_raw'
ROUNDS = 12
PER_PHASE = 40  # hostile messages per topic and phase
DT = 0.05
# joint_4 (limited to +-2.57) tells the joint states apart: the first point of a command lies
# within 1.3963 x 0.5 x t0 (< 0.04 rad) of the measured joint_4 it was planned from.
J4 = 3
Q_BASE = np.array([0.1, 0.3, -3.0, -2.2, 0.05, 0.9, 1.5])
Q_VALID = [Q_BASE + np.array([0.0, 0.02 * r, 0.0, 0.0, 0.0, 0.0, 0.0]) for r in range(ROUNDS)]
Q_DURING = Q_BASE + np.array([0.0, 0.0, 0.0, 1.2, 0.0, 0.0, 0.0])  # joint_4 = -1.0
Q_BAD = Q_BASE + np.array([0.3, -0.5, 0.2, 3.2, 0.1, -0.4, 0.3])  # joint_4 = 1.0
FAR_J4 = (0.0, 1e3, -1e3, 1e6, -1e6)  # joint_4 of valid far-out states: 0 or a limit
LIMITS = make_limits(
    *(default_values()[k] for k in ('position_lower', 'position_upper', 'velocity_limits')),
    default_values()['continuous_joints'],
    default_values()['velocity_scale'],
    JOINTS,
)


def _image(fields: image_codec.ImageFields) -> Image:
    return image_codec.fill_image_msg(Image(), fields)


class Fuzzer:
    """Seeded hostile messages; every published joint state is remembered as valid or bad."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.valid_q: list[np.ndarray] = [*Q_VALID, Q_DURING]
        self.sent = 0

    def stamp(self, msg: Image | JointState) -> None:
        kind = int(self.rng.integers(6))
        now = time.time_ns()
        top = (2**31 - 1) * 10**9  # the largest int32 second
        ns = [0, now, now - int(self.rng.integers(1, 10**12)), now + 10**15, top,
              int(self.rng.integers(0, top))][kind]  # fmt: skip
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(ns, 10**9)

    def valid_rgb(self) -> Image:
        h, w = [(60, 80), (1, 1), (3, 97), (120, 16), (24, 32)][int(self.rng.integers(5))]
        return _image(image_codec.encode_rgb8(self.rng.integers(0, 256, (h, w, 3), np.uint8)))

    def valid_depth(self) -> Image:
        h, w = [(60, 80), (2, 2), (45, 7)][int(self.rng.integers(3))]
        depth = self.rng.uniform(0.2, 3.0, (h, w)).astype(np.float32)
        if self.rng.random() < 0.6:  # NaN / inf / negative readings: valid, read as 0
            mask = self.rng.random((h, w)) < 0.3
            depth[mask] = self.rng.choice([np.nan, np.inf, -np.inf, -1.0], int(mask.sum()))
            return _image(image_codec.encode_depth(depth, '32FC1'))
        return _image(image_codec.encode_depth(depth, '16UC1'))

    def _broken(self, good: Image, encodings: tuple[str, ...]) -> Image:
        """Return ``good`` with a random field broken (may still decode: checked by callers)."""
        msg, r = good, self.rng
        kind = int(r.integers(7))
        if kind == 0:  # any encoding string
            msg.encoding = ''.join(chr(c) for c in r.integers(32, 127, int(r.integers(0, 24))))
        elif kind == 1:  # an encoding of the other kind
            msg.encoding = str(r.choice(encodings))
        elif kind == 2:  # data shorter or longer than height x step
            cut = int(r.integers(1, 64))
            msg.data = bytes(msg.data)[:-cut] if r.random() < 0.5 else bytes(msg.data) + bytes(cut)
        elif kind == 3:  # height / width / step mismatches
            setattr(msg, str(r.choice(['height', 'width', 'step'])), int(r.integers(2, 5000)))
        elif kind == 4:  # zero sizes
            msg.height, msg.width = (0, int(msg.width)) if r.random() < 0.5 else (0, 0)
        elif kind == 5:  # huge sizes backed by a few bytes
            msg.height, msg.width, msg.step = 2**32 - 1, 2**31, 2**32 - 1
        else:  # random bytes of random claimed size
            msg.height, msg.width = int(r.integers(1, 70)), int(r.integers(1, 70))
            msg.step = int(r.integers(0, 300))
            msg.data = r.bytes(int(r.integers(0, 4000)))
        return msg

    def bad_rgb(self) -> Image:
        while True:
            msg = self._broken(self.valid_rgb(), ('16UC1', '32FC1', 'mono16', 'yuv422'))
            if rgb_sample(msg, 1, 'rgb').error:
                return msg

    def bad_depth(self) -> Image:
        while True:
            msg = self._broken(self.valid_depth(), ('rgb8', 'bgr8', 'mono8', 'bayer_rggb8'))
            if depth_sample(msg, 1, 'depth').error:
                return msg

    def joint_state(self, q: np.ndarray, valid: bool) -> JointState:
        """Arm joints at ``q`` among extra joints, shuffled; broken at random unless ``valid``."""
        r = self.rng
        names = [*JOINTS, *EXTRA[: int(r.integers(0, 3))]]
        values = [*q.tolist(), *r.uniform(-1, 1, len(names) - 7).tolist()]
        kind = -1 if valid else int(r.integers(6))
        if kind == 0:  # NaN / inf in an arm joint
            values[int(r.integers(7))] = float(r.choice([np.nan, np.inf, -np.inf]))
        elif kind == 1:  # an arm joint missing
            i = int(r.integers(7))
            del names[i], values[i]
        elif kind == 2:  # an arm joint twice
            i = int(r.integers(7))
            names.append(names[i])
            values.append(values[i] + 0.5)
        order = r.permutation(len(names))
        names, values = [names[i] for i in order], [values[i] for i in order]
        if kind == 3:  # fewer positions than names
            values = values[: int(r.integers(0, len(values)))]
        elif kind == 4:  # more positions than names
            values += r.uniform(-1, 1, int(r.integers(1, 5))).tolist()
        elif kind == 5:  # no names, any positions
            names, values = [], r.uniform(-1, 1, int(r.integers(0, 9))).tolist()
        msg = JointState()
        msg.name = names
        msg.position = values
        msg.velocity = r.uniform(-1, 1, int(r.integers(0, 12))).tolist()
        msg.effort = r.uniform(-1, 1, int(r.integers(0, 12))).tolist()
        return msg

    def far_valid_q(self) -> np.ndarray:
        """Return a valid measurement far out of the limits on some joints (joint_4: 0 or far)."""
        q = Q_BASE.copy()
        far = self.rng.random(7) < 0.5
        q[far] = self.rng.choice([1e3, -1e3, 1e6, -1e6, 50.0], int(far.sum()))
        q[J4] = float(self.rng.choice(FAR_J4))
        self.valid_q.append(q)
        return q


def _marker_joints(tag: str) -> JointState:
    msg = JointState()
    msg.name = [*JOINTS[:6], tag]  # joint_7 missing: an error that names the tag
    msg.position = [*Q_BAD[:6].tolist(), 0.0]
    return msg


def _marker_image(tag: str) -> Image:
    return _image(image_codec.ImageFields(2, 2, tag, 0, 6, bytes(12)))


def _first_point(msg) -> tuple[np.ndarray, float]:
    p = msg.points[0]
    return np.asarray(p.positions, dtype=np.float64), stamp_to_ns(p.time_from_start) * 1e-9


def _near(msg, q: np.ndarray) -> bool:
    """Whether the command's first point is reachable from ``q`` (clamped) within the bound."""
    p0, t0 = _first_point(msg)
    q0 = np.clip(q, LIMITS.lower, LIMITS.upper)
    return bool(np.all(np.abs(p0 - q0) <= LIMITS.max_velocity * t0 + 1e-6))


def _violations(msg, candidates: list[np.ndarray]) -> list[str]:
    """Invariant violations of one command, the first point checked from its measured state."""
    if not msg.points or len(msg.points[0].positions) != 7:
        return [str(v) for v in command_violations(msg, JOINTS, LIMITS)] or ['shape']
    near = [q for q in candidates if _near(msg, q)]
    if not near:
        p0, t0 = _first_point(msg)
        return [f'speed: first point {p0.tolist()} at {t0} s is near no valid measured state']
    found = [command_violations(msg, JOINTS, LIMITS, q) for q in near]
    return [] if any(not f for f in found) else [str(v) for v in found[0]]


@pytest.fixture(scope='module')
def peer() -> Iterator[PolicyNodePeer]:
    p = PolicyNodePeer()
    try:
        yield p
    finally:
        p.close()


def test_hostile_inputs_over_dds_never_yield_an_unsafe_command(
    tmp_path: Path, peer: PolicyNodePeer
):
    ckpt = node_checkpoint(tmp_path / 'ckpt', seed=3)
    node = PolicyNodeProcess(
        '--params-file', str(PARAMS_FILE), '-p', f'checkpoint:={ckpt}', '-p', 'device:=cpu',
        '-p', 'action_horizon:=2', '-p', 'max_obs_age_s:=0.5', '-p', 'enabled_on_start:=true',
        '-p', 'diagnostics_period_s:=0.5',
    )  # fmt: skip
    fuzz = Fuzzer(seed=20261202)
    good_rgb = _image(image_codec.encode_rgb8(fuzz.rng.integers(0, 256, (60, 80, 3), np.uint8)))
    good_depth = _image(image_codec.encode_depth(np.full((60, 80), 1.2, np.float32)))

    def send(key: str, msg: Image | JointState, hostile_stamp: bool = True) -> None:
        if hostile_stamp:
            fuzz.stamp(msg)
        peer.publish(key, msg)
        fuzz.sent += 1
        time.sleep(0.001)

    phase_of: list[tuple[int, str]] = []  # (first command index, phase) of each phase
    try:
        node.wait_ready()
        for r in range(ROUNDS):
            # -- valid: the node must command again, from Q_VALID[r]
            phase_of.append((peer.num_commands(), f'valid {r}'))
            start = peer.num_commands()

            def commanding(start: int = start, q: np.ndarray = Q_VALID[r]) -> bool:
                for key, msg in (('rgb', good_rgb), ('depth', good_depth)):
                    msg.header.stamp = peer.node.get_clock().now().to_msg()
                    peer.publish(key, msg)
                joints = fuzz.joint_state(q, valid=True)
                joints.header.stamp = peer.node.get_clock().now().to_msg()
                peer.publish('joints', joints)
                time.sleep(0.01)
                return sum(_near(m, q) for m in peer.commands_since(start)) >= 2

            peer.wait(commanding, 30.0, f'round {r}: commands from valid input')
            # -- bad colour: no valid observation at all
            since = peer.mark()
            tag = f'open_{r}'
            for key in ('rgb', 'depth'):
                send(key, _marker_image(tag), hostile_stamp=False)
            peer.wait_report(lambda s, tag=tag: s.message.count(tag) == 2, since, what=tag)
            phase_of.append((peer.num_commands(), f'bad colour {r}'))
            for i in range(PER_PHASE):
                send('rgb', fuzz.bad_rgb())
                send('depth', fuzz.valid_depth() if i % 2 else fuzz.bad_depth())
                valid = i % 3 != 0
                send('joints', fuzz.joint_state(Q_DURING if valid else Q_BAD, valid))
            # -- bad joints: valid images, joint states valid (far out) or invalid at Q_BAD
            since = peer.mark()
            tag = f'close_{r}'
            send('joints', _marker_joints(tag), hostile_stamp=False)
            peer.wait_report(lambda s, tag=tag: tag in s.message, since, what=tag)
            phase_of.append((peer.num_commands(), f'bad joints {r}'))
            for i in range(PER_PHASE):
                send('rgb', fuzz.valid_rgb() if i % 4 else good_rgb)
                send('depth', fuzz.valid_depth())
                valid = i % 2 == 0
                send('joints', fuzz.joint_state(fuzz.far_valid_q() if valid else Q_BAD, valid))
                time.sleep(0.002)
            since = peer.mark()
            tag = f'end_{r}'
            send('joints', _marker_joints(tag), hostile_stamp=False)
            for key in ('rgb', 'depth'):
                send(key, _marker_image(tag), hostile_stamp=False)
            peer.wait_report(lambda s, tag=tag: s.message.count(tag) == 3, since, what=tag)
        alive = node.proc.poll() is None
    finally:
        rc = node.stop(signal.SIGTERM)
    commands = peer.commands_since(0)
    bad = []
    for i, msg in enumerate(commands):
        phase = next(p for first, p in reversed(phase_of) if first <= i)
        found = _violations(msg, fuzz.valid_q)
        if _near(msg, Q_BAD) or _near(msg, Q_DURING):
            found.append('planned from an invalid observation')
        if found:
            bad.append(f'command {i} ({phase}): {found}')
    assert alive, node.output
    assert rc == 0, node.output
    assert 'Traceback' not in node.output, node.output
    assert bad == [], '\n'.join(bad[:20])
    # Enough cases reached the node, and commands came in every round.
    assert fuzz.sent >= ROUNDS * PER_PHASE * 6 + ROUNDS * 6
    assert len(commands) >= 2 * ROUNDS
    print(f'{fuzz.sent} messages published, {len(commands)} commands checked')
