"""
~/reset between episodes, with the policy node in this process (no DDS traffic).

Its callbacks and control steps are called directly.

A reset forgets the camera frames, so the control steps right after it wait for new ones. The
reset must survive those steps: when fresh frames arrive, the first plan starts from the
measured arm, not spliced onto the previous episode's command (which may still be running in
the planner's book when the next episode starts from another pose).
"""

from collections.abc import Iterator
from pathlib import Path

from helpers import node_checkpoint, wait_for
from kinova_policy_ros.core import image_codec
from kinova_policy_ros.ros import policy_node
from kinova_policy_ros.ros.diagnostics import INVALID, RUNNING, WAITING
from kinova_policy_ros.ros.policy_node import PolicyNode
from nav_msgs.msg import Path as PathMsg
import numpy as np
import pytest
import rclpy
from rclpy.parameter import Parameter
from rclpy.time import Time
from sensor_msgs.msg import Image, JointState
from trajectory_msgs.msg import JointTrajectory

JOINTS = [f'joint_{i}' for i in range(1, 8)]
Q_A = np.array([0.1, 0.3, -3.0, -2.2, 0.05, 0.9, 1.5])
Q_B = np.array([-0.4, 0.6, -2.7, -1.9, 0.3, 0.6, 1.2])  # the next episode's start, elsewhere


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return node_checkpoint(tmp_path_factory.mktemp('reset') / 'ckpt', seed=5)


class FrozenClock:
    """The policy node's clock, moved only by the test: a plan's latency is what the test says."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.ns = 1_700_000_000_000_000_000
        monkeypatch.setattr(policy_node, 'now_ns', lambda _node: self.ns)

    def advance(self, seconds: float) -> None:
        self.ns += round(seconds * 1e9)


@pytest.fixture
def context() -> Iterator[rclpy.context.Context]:
    ctx = rclpy.context.Context()
    rclpy.init(context=ctx)
    try:
        yield ctx
    finally:
        rclpy.try_shutdown(context=ctx)


class Driver:
    """A policy node whose control steps run when called, and the commands it published."""

    def __init__(self, checkpoint: Path, context: rclpy.context.Context) -> None:
        self.node = PolicyNode(
            context=context,
            parameter_overrides=[
                Parameter('checkpoint', value=str(checkpoint)),
                Parameter('device', value='cpu'),
                Parameter('enabled_on_start', value=True),
                Parameter('torchscript', value=False),
                Parameter('max_obs_age_s', value=5.0),
            ],
        )
        self.node.stop_control_thread()  # the test runs the steps
        self.commands: list[JointTrajectory] = []
        pub = self.node._command_pub
        assert pub is not None
        pub.publish = self.commands.append  # type: ignore[method-assign]
        rng = np.random.default_rng(0)
        self.rgb = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
        self.depth = rng.uniform(0.3, 1.5, (24, 32)).astype(np.float32)

    def feed(self, q: np.ndarray, frames: bool = True) -> None:
        # the node's own clock (a FrozenClock's time where a test froze it)
        stamp = Time(nanoseconds=policy_node.now_ns(self.node)).to_msg()
        if frames:
            rgb = Image()
            image_codec.fill_image_msg(rgb, image_codec.encode_rgb8(self.rgb))
            rgb.header.stamp = stamp
            depth = Image()
            image_codec.fill_image_msg(depth, image_codec.encode_depth(self.depth, '16UC1'))
            depth.header.stamp = stamp
            self.node._on_rgb(rgb)
            self.node._on_depth(depth)
        js = JointState(name=JOINTS, position=[float(v) for v in q])
        js.header.stamp = stamp
        self.node._on_joints(js)

    def step(self) -> str:
        self.node._on_tick()
        return self.node.status.state

    def plan_once(self, q: np.ndarray) -> None:
        """Run control steps on fresh inputs until the node plans (every ``action_horizon``)."""
        before = len(self.commands)
        for _ in range(self.node.action_horizon):
            self.feed(q)
            assert self.step() == RUNNING
            if len(self.commands) > before:
                return

    def close(self) -> None:
        self.node.destroy_node()


def _positions(msg: JointTrajectory) -> np.ndarray:
    return np.array([p.positions for p in msg.points])


def test_reset_survives_the_steps_that_wait_for_fresh_frames(
    checkpoint: Path, context: rclpy.context.Context, monkeypatch: pytest.MonkeyPatch
):
    # Both nodes on one frozen clock: each plan is made with the same latency (the planner
    # retimes the prediction by the time since the observation), so the plans compare exactly.
    clock = FrozenClock(monkeypatch)
    drv = Driver(checkpoint, context)
    fresh = Driver(checkpoint, context)
    try:
        drv.feed(Q_A)
        clock.advance(0.004)
        assert drv.step() == RUNNING and len(drv.commands) == 1  # episode A's first plan
        a_command = drv.node.planner.running(clock.ns)
        assert a_command is not None
        drv.node.inputs.request_reset()  # ~/reset: the next episode starts at Q_B
        clock.advance(0.02)
        drv.feed(Q_B, frames=False)
        assert drv.step() == WAITING  # the frames were forgotten: no observation yet
        clock.advance(0.02)
        assert drv.step() == WAITING
        assert len(drv.commands) == 1
        clock.advance(0.02)
        drv.feed(Q_B)
        fresh.feed(Q_B)
        clock.advance(0.004)
        assert clock.ns < a_command.end_ns  # without the reset, A's command would still run
        assert drv.step() == RUNNING and len(drv.commands) == 2
        assert fresh.step() == RUNNING and len(fresh.commands) == 1
        # The same first plan as a node that never saw episode A: nothing of A's command.
        np.testing.assert_allclose(
            _positions(drv.commands[1]), _positions(fresh.commands[0]), rtol=0, atol=1e-9
        )
        # ... and the plan starts at the measured arm, not at episode A's command.
        first = _positions(drv.commands[1])[0]
        assert np.abs(first - Q_B).max() < np.abs(first - Q_A).max()
    finally:
        drv.close()
        fresh.close()


def test_an_input_fault_keeps_the_running_command(
    checkpoint: Path, context: rclpy.context.Context
):
    # Without ~/reset, a bad input clears the observation buffer only: the last command still
    # runs on the controller, and the next plan continues from it (the planner keeps it).
    drv = Driver(checkpoint, context)
    try:
        drv.feed(Q_A)
        assert drv.step() == RUNNING
        last = drv.node.planner.last
        assert last is not None
        bad = Image(height=24, width=32, encoding='bogus', step=96, data=bytes(24 * 96))
        bad.header.stamp = drv.node.get_clock().now().to_msg()
        drv.node._on_rgb(bad)
        assert drv.step() == INVALID
        assert drv.node.planner.last is last
        drv.feed(Q_A)
        assert drv.step() == RUNNING and len(drv.commands) == 2
    finally:
        drv.close()


def test_plot_topics_are_built_only_for_subscribers(
    checkpoint: Path, context: rclpy.context.Context
):
    # ~/predicted_trajectory and ~/predicted_ee_path are for plotting: without a subscriber the
    # node skips building them (forward kinematics and messages), and builds both once one
    # subscribes to each; the command is published either way.
    drv = Driver(checkpoint, context)
    listener = rclpy.create_node('plot_listener', context=context)
    try:
        sent: dict[str, list[object]] = {'predicted': [], 'path': []}
        drv.node._predicted_pub.publish = sent['predicted'].append  # type: ignore[method-assign]
        drv.node._path_pub.publish = sent['path'].append  # type: ignore[method-assign]
        drv.feed(Q_A)
        assert drv.step() == RUNNING and len(drv.commands) == 1
        assert sent == {'predicted': [], 'path': []}
        name = drv.node.get_name()
        listener.create_subscription(
            JointTrajectory, f'/{name}/predicted_trajectory', lambda _: None, 10
        )
        assert wait_for(lambda: drv.node._predicted_pub.get_subscription_count() == 1, 10.0)
        drv.plan_once(Q_A)
        assert len(drv.commands) == 2
        assert [len(v) for v in sent.values()] == [1, 0]
        listener.create_subscription(PathMsg, f'/{name}/predicted_ee_path', lambda _: None, 10)
        assert wait_for(lambda: drv.node._path_pub.get_subscription_count() == 1, 10.0)
        drv.plan_once(Q_A)
        assert len(drv.commands) == 3
        assert [len(v) for v in sent.values()] == [2, 1]
        assert isinstance(sent['predicted'][-1], JointTrajectory)
        assert isinstance(sent['path'][-1], PathMsg)
    finally:
        listener.destroy_node()
        drv.close()
