"""
``sim_node`` with ``camera_profile:=kinova_vision`` over real DDS, as a real setup publishes.

What the kinova_vision driver and ros2_kortex (Robotiq 2F-85) publish: sizes, encodings, frame
ids, stamps, CameraInfo and the content of ``/joint_states`` (positions, velocities, efforts).
"""

from collections.abc import Callable, Iterator
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

from helpers import wait_for
from kinova_policy_ros.core import kinematics as kin
from kinova_policy_ros.core.stamps import stamp_to_ns
from kinova_policy_ros.sim.camera import KINOVA_COLOR_FY, KINOVA_DEPTH_FY, PROFILES
from kinova_policy_ros.sim.env import GRIPPER_JOINT
from kinova_policy_ros.sim.ros import sim_node
from kinova_policy_ros.sim.ros.processes import sim_command
import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import String

pytestmark = [pytest.mark.dds, pytest.mark.slow]

KEYS: dict[str, type] = {
    'joint_states': JointState,
    'rgb': Image,
    'depth': Image,
    'camera_info': CameraInfo,
    'depth_camera_info': CameraInfo,
    'task_state': String,
}


class Listener:
    """Keeps the last message and every header stamp of each topic."""

    def __init__(self) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('kinova_vision_test', context=self.context)
        self.started_ns = time.time_ns()
        self.last: dict[str, Any] = {}
        self.stamps: dict[str, list[int]] = {k: [] for k in KEYS}
        self.lock = threading.Lock()
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        for key, msg_type in KEYS.items():
            self.node.create_subscription(
                msg_type, sim_node.DEFAULT_TOPICS[key], self._callback(key), qos
            )
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _callback(self, key: str) -> Callable[[Any], None]:
        def cb(msg: Any) -> None:
            with self.lock:
                self.last[key] = msg
                if hasattr(msg, 'header'):
                    self.stamps[key].append(stamp_to_ns(msg.header.stamp))

        return cb

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=5.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self.thread.join(timeout=5.0)


@pytest.fixture(scope='module')
def listener() -> Iterator[Listener]:
    cmd = sim_command(3, {'camera_profile': 'kinova_vision'})
    proc = subprocess.Popen(
        cmd, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    h = Listener()
    try:
        ok = wait_for(
            lambda: all(len(h.stamps[k]) >= 4 for k in KEYS if k != 'task_state')
            and 'task_state' in h.last,  # a String (no header): its latest message
            90.0,
        )
        assert ok, {k: len(v) for k, v in h.stamps.items()}
        yield h
    finally:
        h.close()
        proc.send_signal(2)
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        err = proc.stderr.read().decode(errors='replace') if proc.stderr else ''
        assert rc == 0 and 'Traceback' not in err, err[-2000:]


def test_command_line_selects_the_profile_and_its_camera():
    cmd = sim_command(3, {'camera_profile': 'kinova_vision'})
    assert cmd[:3] == [sys.executable, '-m', 'kinova_policy_ros.sim.ros.sim_node']
    assert 'camera_profile:="kinova_vision"' in cmd
    assert 'image_width:=1280' in cmd and 'image_height:=720' in cmd
    assert 'camera_rate_hz:=30.0' in cmd


def test_colour_and_depth_have_the_vision_module_sizes_encodings_and_frames(listener: Listener):
    rgb, depth = listener.last['rgb'], listener.last['depth']
    assert (rgb.encoding, rgb.width, rgb.height, rgb.step) == ('rgb8', 1280, 720, 3 * 1280)
    assert (depth.encoding, depth.width, depth.height, depth.step) == ('16UC1', 480, 270, 960)
    assert len(rgb.data) == 1280 * 720 * 3 and len(depth.data) == 480 * 270 * 2
    assert rgb.header.frame_id == 'camera_color_frame'
    assert depth.header.frame_id == 'camera_depth_frame'
    mm = np.frombuffer(bytes(depth.data), dtype='<u2' if not depth.is_bigendian else '>u2')
    assert 300 < np.median(mm[mm > 0]) < 4000  # millimetres: the table is ~1-2 m away


def test_each_stream_has_its_own_camera_info(listener: Listener):
    info, dinfo = listener.last['camera_info'], listener.last['depth_camera_info']
    assert (info.width, info.height, info.header.frame_id) == (1280, 720, 'camera_color_frame')
    assert (dinfo.width, dinfo.height, dinfo.header.frame_id) == (480, 270, 'camera_depth_frame')
    k, dk = np.reshape(info.k, (3, 3)), np.reshape(dinfo.k, (3, 3))
    # focal lengths of the driver's default calibrations, principal point at the image centre
    np.testing.assert_allclose([k[0, 0], k[1, 1]], KINOVA_COLOR_FY, rtol=1e-6)
    np.testing.assert_allclose([dk[0, 0], dk[1, 1]], KINOVA_DEPTH_FY, rtol=1e-6)
    np.testing.assert_allclose([k[0, 2], k[1, 2]], [639.5, 359.5])
    np.testing.assert_allclose([dk[0, 2], dk[1, 2]], [239.5, 134.5])
    assert PROFILES['kinova_vision'].depth.fovy_deg > PROFILES['kinova_vision'].color.fovy_deg


def test_stamps_of_a_frame_agree_and_increase(listener: Listener):
    with listener.lock:
        stamps = {k: list(v) for k, v in listener.stamps.items()}
    rgb = stamps['rgb']
    assert (np.diff(rgb) > 0).all() and listener.started_ns <= rgb[0] <= time.time_ns()
    for key in ('depth', 'camera_info', 'depth_camera_info'):
        # every frame stamps its four messages alike (the last ones may still be in flight)
        common = set(stamps[key][:-1]) & set(rgb)
        assert len(common) >= min(len(stamps[key]), len(rgb)) - 2, key


def test_joint_states_as_ros2_kortex_with_a_2f85(listener: Listener):
    msg = listener.last['joint_states']
    assert sorted(msg.name) == sorted([*kin.JOINT_NAMES, GRIPPER_JOINT])
    assert len(msg.position) == len(msg.velocity) == len(msg.effort) == 8
    effort = dict(zip(msg.name, msg.effort))
    assert effort[GRIPPER_JOINT] == 0.0  # the simulator does not actuate the gripper
    assert all(np.isfinite(list(effort.values())))
    task = json.loads(listener.last['task_state'].data)
    # the TCP is tcp_offset from the flange: the two distances differ by at most that
    assert abs(task['distance_flange'] - task['distance']) <= task['tcp_offset'] + 1e-9
    assert np.linalg.norm(np.subtract(task['tcp'], task['ee'])) == pytest.approx(
        task['tcp_offset']
    )
