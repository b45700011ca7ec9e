"""
rosbag2 recording of the simulator topics: over DDS (like ``ros2 bag record``) or offline.

Both paths store each message's CDR bytes exactly as rclpy serializes them (raw subscriptions
over DDS; ``rclpy.serialization.serialize_message`` offline), type definitions included, in MCAP
or sqlite3 storage. Note: rclpy's serialized messages carry trailing padding bytes (a JointState
is 8 bytes longer than what ``rosbags`` writes), exactly like a real recording, so readers must
tolerate them.

A bag is written inside ``.<name>.partial/`` next to its final place and moved to ``<path>``
when it is closed, so a directory named like a bag is always complete.
"""

from collections.abc import Mapping
from dataclasses import dataclass
import json
from pathlib import Path
import shutil
import threading
from typing import Any

from kinova_policy_ros.core.errors import BagError, ConfigError
from kinova_policy_ros.ros.messages import now_ns, ros_type_name
from kinova_policy_ros.sim.env import EpisodeSpec, Gen3Sim
from kinova_policy_ros.sim.expert import (
    DemoVariation,
    draw_variation,
    EpisodeVariation,
    ExpertConfig,
    JointPlan,
    plan_reach,
    stop_plan,
)
from kinova_policy_ros.sim.ros import sim_node
from kinova_policy_ros.sim.trajectory import TrajectoryFollower
import numpy as np
import numpy.typing as npt
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import serialize_message
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import get_typestore, Stores
from trajectory_msgs.msg import JointTrajectory

STORAGES = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}


class BagSink:
    """
    A rosbag2 being written: ``write(topic, stamp_ns, raw_bytes)``, then ``close()``.

    :param path: the bag directory to create (must not exist).
    :param topics: topic name -> ROS type name (``sensor_msgs/msg/Image``).
    :param storage: ``mcap`` or ``sqlite3``.
    """

    def __init__(self, path: str | Path, topics: Mapping[str, str], storage: str = 'mcap'):
        if storage not in STORAGES:
            raise ConfigError(f'storage must be one of {sorted(STORAGES)}, got {storage!r}')
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f'{self.path}: bag directory already exists')
        self._tmp_root = self.path.with_name(f'.{self.path.name}.partial')
        if self._tmp_root.exists():
            shutil.rmtree(self._tmp_root)
        self._tmp_root.mkdir(parents=True)
        self._partial = self._tmp_root / self.path.name
        typestore = get_typestore(Stores.ROS2_HUMBLE)
        self._writer = Writer(self._partial, version=8, storage_plugin=STORAGES[storage])
        self._writer.open()
        self._connections = {
            topic: self._writer.add_connection(topic, msgtype, typestore=typestore)
            for topic, msgtype in topics.items()
        }
        self._lock = threading.Lock()
        self.counts = dict.fromkeys(topics, 0)
        self._closed = False

    def write(self, topic: str, stamp_ns: int, data: bytes) -> None:
        """Append one serialized message received (or created) at ``stamp_ns``."""
        with self._lock:
            if self._closed:
                return
            self._writer.write(self._connections[topic], int(stamp_ns), data)
            self.counts[topic] += 1

    def close(self) -> Path:
        """Finish the bag (metadata.yaml) and move it to its final name."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._writer.close()
                self._partial.rename(self.path)
                self._tmp_root.rmdir()
        return self.path


# -- offline demonstrations --------------------------------------------------------------------


@dataclass(frozen=True)
class RecordingRates:
    """Publication rates (Hz) of the simulated driver and camera."""

    joint_state_hz: float = 100.0
    camera_hz: float = 15.0
    task_state_hz: float = 10.0


def default_topics() -> dict[str, str]:
    """Topic name -> ROS type name of everything the simulator setup publishes."""
    return {
        sim_node.DEFAULT_TOPICS[key]: ros_type_name(msg_type)
        for key, msg_type in sim_node.TOPIC_TYPES.items()
    }


def task_state(sim: Gen3Sim, stamp_ns: int) -> dict[str, Any]:
    """Return the task-state dictionary the simulator node publishes as JSON."""
    return {'stamp_ns': int(stamp_ns), **sim.task_fields()}


class _SensorWriter:
    """
    Writes what the simulator node publishes into a bag, stamped ``start_ns`` + simulated time.

    ``write_due()`` writes every stream whose period has elapsed: joint states, the camera
    (RGB, depth and both camera infos) and the task state; ``write_command()`` one command.
    """

    def __init__(self, sim: Gen3Sim, sink: BagSink, rates: RecordingRates, start_ns: int):
        self.sim = sim
        self.sink = sink
        self.start_ns = start_ns
        self.topics = sim_node.DEFAULT_TOPICS
        self.info = sim.camera_info()
        self.depth_info = sim.depth_camera_info()
        self.periods = {
            'joint_states': round(1e9 / rates.joint_state_hz),
            'camera': round(1e9 / rates.camera_hz),
            'task_state': round(1e9 / rates.task_state_hz),
        }
        self.due = dict.fromkeys(self.periods, 0)

    def _write(self, key: str, stamp: int, msg: Any) -> None:
        self.sink.write(self.topics[key], stamp, serialize_message(msg))

    def write_command(self, plan: JointPlan) -> JointTrajectory:
        """Write ``plan`` as the command message sent now; return the message."""
        command = sim_node.plan_to_msg(plan)
        self._write('command', self.start_ns + self.sim.time_ns, command)
        return command

    def _take(self, key: str, now: int) -> bool:
        """Whether stream ``key`` is due at ``now`` (then its next due time moves on)."""
        if now < self.due[key]:
            return False
        self.due[key] += self.periods[key]
        return True

    def write_due(self) -> None:
        """Write every stream that is due at the current simulated time."""
        sim, now = self.sim, self.sim.time_ns
        stamp = self.start_ns + now
        if self._take('joint_states', now):
            q, dq = sim.joint_positions(), sim.joint_velocities()
            msg = sim_node.joint_state_msg(stamp, q, dq, effort=sim.joint_efforts())
            self._write('joint_states', stamp, msg)
        if self._take('camera', now):
            rgb, depth = sim.render()
            self._write('rgb', stamp, sim_node.rgb_msg(stamp, rgb, self.info.frame_id))
            depth_frame = self.depth_info.frame_id
            self._write('depth', stamp, sim_node.depth_msg(stamp, depth, depth_frame))
            self._write('camera_info', stamp, sim_node.camera_info_msg(stamp, self.info))
            depth_info = sim_node.camera_info_msg(stamp, self.depth_info)
            self._write('depth_camera_info', stamp, depth_info)
        if self._take('task_state', now):
            self._write('task_state', stamp, sim_node.task_state_msg(task_state(sim, stamp)))


@dataclass
class _Replans:
    """
    The expert's re-plans of a varied episode: stop at ``pause_ns``, reach again at resume.

    ``due()`` returns the plan to send at the current simulated time, None when nothing is due.
    """

    target: npt.NDArray[np.float64]
    expert: ExpertConfig | None
    pause_s: float = 0.0
    pause_ns: int | None = None
    resume_ns: int | None = None

    @classmethod
    def of(
        cls,
        drawn: EpisodeVariation | None,
        start_ns: int,
        reach: JointPlan,
        target: npt.NDArray[np.float64],
        expert: ExpertConfig | None,
    ) -> '_Replans':
        """Return the re-plans of ``drawn`` for a ``reach`` sent at ``start_ns``."""
        if drawn is None or drawn.pause_at is None:
            return cls(target, expert)
        pause_ns = start_ns + round(drawn.pause_at * reach.duration * 1e9)
        return cls(target, expert, drawn.pause_s, pause_ns)

    def due(self, sim: Gen3Sim) -> JointPlan | None:
        """Return the stop plan at the pause, the new reach at the resume, else None."""
        now = sim.time_ns
        if self.pause_ns is not None and now >= self.pause_ns:
            self.pause_ns = None
            self.resume_ns = now + round(self.pause_s * 1e9)
            return stop_plan(sim.joint_positions(), sim.joint_velocities(), self.pause_s)
        if self.resume_ns is not None and now >= self.resume_ns:
            self.resume_ns = None
            return plan_reach(sim.joint_positions(), self.target, self.expert)
        return None


def _start_episode(
    sim: Gen3Sim,
    seed: int,
    variation: DemoVariation | None,
    expert: ExpertConfig | None,
) -> tuple[EpisodeSpec, EpisodeVariation | None]:
    """Reset ``sim`` to ``seed`` and apply the drawn variation's start pose, if any."""
    spec = sim.reset(seed)
    drawn = (
        draw_variation(seed, spec.q0, spec.target, variation, expert)
        if variation is not None and variation.active
        else None
    )
    if drawn is not None and drawn.start_q is not None:
        sim.place_arm(drawn.start_q)
    return spec, drawn


def _run_expert(
    sim: Gen3Sim,
    writer: _SensorWriter,
    replans: _Replans,
    first: JointPlan,
    settle_time: float,
    control_dt: float,
) -> None:
    """Follow ``first`` (and the re-plans) until the last plan has run and settled."""
    follower = TrajectoryFollower()

    def send(plan: JointPlan) -> int:
        """Record and follow ``plan`` from now; return the control steps it needs."""
        command = writer.write_command(plan)
        follower.set_trajectory(
            sim_node.msg_to_command(command),
            sim.time_ns,
            sim.joint_positions(),
            sim.joint_velocities(),
        )
        return round((plan.duration + settle_time) / control_dt) + 1

    remaining = send(first)
    while remaining > 0:
        remaining -= 1
        plan = replans.due(sim)
        if plan is not None:
            remaining = send(plan)
        writer.write_due()
        desired = follower.sample(sim.time_ns)
        assert desired is not None
        sim.step(desired[0], desired[1], control_dt)


def write_expert_episode(
    sim: Gen3Sim,
    seed: int,
    path: str | Path,
    storage: str = 'mcap',
    rates: RecordingRates | None = None,
    expert: ExpertConfig | None = None,
    settle_time: float = 1.0,
    start_ns: int = 1_700_000_000_000_000_000,
    control_dt: float = 0.002,
    variation: DemoVariation | None = None,
) -> dict[str, Any]:
    """
    Run one seeded expert episode in ``sim`` and write it as a rosbag2 at ``path``, no DDS.

    Messages are what the simulator node publishes, serialized by rclpy; each is stamped (header
    and bag time) with ``start_ns`` + the simulated time. ``variation`` may start the arm near
    the target or pause the reach (see :class:`~kinova_policy_ros.sim.expert.DemoVariation`);
    every command the expert sends is recorded. Returns a summary dictionary (seed, target,
    variation, final distance, success, message counts).
    """
    sink = BagSink(path, default_topics(), storage)
    expert = expert or ExpertConfig(tcp_offset=sim.scene.tcp_offset)
    try:
        spec, drawn = _start_episode(sim, seed, variation, expert)
        writer = _SensorWriter(sim, sink, rates or RecordingRates(), start_ns)
        reach = plan_reach(sim.joint_positions(), spec.target, expert)
        replans = _Replans.of(drawn, sim.time_ns, reach, spec.target, expert)
        _run_expert(sim, writer, replans, reach, settle_time, control_dt)
    except BaseException:
        sink.close()
        shutil.rmtree(sink.path, ignore_errors=True)
        raise
    bag = sink.close()
    return {
        'bag': bag.name,
        'seed': int(seed),
        'target': [float(v) for v in spec.target],
        'q0': [float(v) for v in spec.q0],
        'recovery_start': drawn is not None and drawn.start_q is not None,
        'pause_s': drawn.pause_s if drawn is not None and drawn.pause_at is not None else 0.0,
        'final_distance': sim.distance(),
        'final_distance_flange': sim.flange_distance(),
        'success': sim.success(),
        'duration_s': sim.time,
        'messages': dict(sink.counts),
    }


# -- DDS recorder --------------------------------------------------------------------------------


class BagRecorder(Node):
    """
    ``ros2 bag record`` for a fixed topic list: raw subscriptions, receive-time stamps.

    Subscriptions are reliable (they match the simulator's reliable publishers without loss;
    a best-effort publisher, e.g. some camera drivers, would need a best-effort subscription).

    Subscriptions live as long as the node; ``start(path)`` opens a new bag and ``stop()``
    finishes it, so consecutive episodes need no new DDS discovery. Messages arriving while no
    bag is open are dropped.

    :param topics: topic name -> rclpy message class (default: everything the simulator and
        the commanding node publish).
    :param storage: ``mcap`` or ``sqlite3``.
    """

    def __init__(
        self,
        topics: Mapping[str, type] | None = None,
        storage: str = 'mcap',
        node_name: str = 'bag_recorder',
        **kwargs: Any,
    ) -> None:
        super().__init__(node_name, **kwargs)
        if storage not in STORAGES:
            raise ConfigError(f'storage must be one of {sorted(STORAGES)}, got {storage!r}')
        self.storage = storage
        self.topics = dict(
            topics or {sim_node.DEFAULT_TOPICS[k]: t for k, t in sim_node.TOPIC_TYPES.items()}
        )
        self.sink: BagSink | None = None
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self._subs = [
            self.create_subscription(
                msg_type,
                topic,
                self._make_callback(topic),
                reliable,
                raw=True,
            )
            for topic, msg_type in self.topics.items()
        ]

    def _make_callback(self, topic: str) -> Any:
        def callback(data: bytes) -> None:
            sink = self.sink
            if sink is not None:
                sink.write(topic, now_ns(self), data)

        return callback

    def start(self, path: str | Path) -> None:
        """Open a new bag at ``path`` (finishing the current one, if any)."""
        self.stop()
        self.sink = BagSink(
            path, {t: ros_type_name(m) for t, m in self.topics.items()}, self.storage
        )

    def stop(self) -> Path | None:
        """Finish the current bag; return its path (None when none was open)."""
        sink, self.sink = self.sink, None
        return sink.close() if sink is not None else None


def write_manifest(out_dir: Path, episodes: list[dict[str, Any]]) -> Path:
    """Write ``episodes.json`` (atomically) describing the bags of a demonstration run."""
    path = out_dir / 'episodes.json'
    tmp = path.with_name(path.name + '.tmp')
    tmp.write_text(json.dumps({'episodes': episodes}, indent=1))
    tmp.replace(path)
    return path


def success_rate(episodes: list[dict[str, Any]]) -> float:
    """Fraction of episodes marked successful."""
    if not episodes:
        return float('nan')
    return float(np.mean([bool(e['success']) for e in episodes]))
