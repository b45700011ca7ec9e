"""
The harness node of a closed-loop evaluation over DDS: records the loop, holds service clients.

It subscribes to ``/joint_states`` (mapped by name), the commands on
``/joint_trajectory_controller/joint_trajectory``, ``/kinova_policy/predicted_trajectory``
(counted), ``/sim_node/task_state`` and the policy node's ``/diagnostics``, each message kept
with its receipt time on this node's clock (system time, like the nodes' stamps).
"""

import threading
from typing import Any, TypedDict

from diagnostic_msgs.msg import DiagnosticArray
from kinova_policy_ros.core import kinematics as kin
from kinova_policy_ros.ros.messages import now_ns
from kinova_policy_ros.ros.node_params import NODE_NAME as POLICY_NODE_NAME
from kinova_policy_ros.sim.eval_records import JointSample
from kinova_policy_ros.sim.ros.sim_node import DEFAULT_TOPICS, task_state_from_msg
from rcl_interfaces.srv import SetParameters
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory

SIM_NODE_NAME = 'sim_node'
POLICY_STATUS_NAME = f'{POLICY_NODE_NAME}: policy'


class RecordSnapshot(TypedDict):
    """Copies of what :class:`EvalRecorder` received since its last ``clear()``."""

    joints: list[JointSample]
    commands: list[tuple[int, JointTrajectory]]
    tasks: list[tuple[int, dict[str, Any]]]
    diagnostics: list[tuple[int, dict[str, str]]]
    predicted: int


def joint_index(names: tuple[str, ...]) -> list[int] | None:
    """Return where each of ``kin.JOINT_NAMES`` sits in ``names`` (None if one is missing)."""
    lookup = {n: i for i, n in enumerate(names)}
    if any(n not in lookup for n in kin.JOINT_NAMES):
        return None
    return [lookup[n] for n in kin.JOINT_NAMES]


class EvalRecorder(Node):
    """
    Drives the episodes (service clients) and records the closed loop (subscriptions).

    Every callback appends ``(receipt ns, value)`` to a list under a lock; ``clear()`` starts a
    new episode's record. Times are this node's clock (system time, like the nodes' stamps).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('closed_loop_eval', **kwargs)
        self._lock = threading.Lock()
        self.joints: list[JointSample] = []
        self.commands: list[tuple[int, JointTrajectory]] = []
        self.tasks: list[tuple[int, dict[str, Any]]] = []
        self.diagnostics: list[tuple[int, dict[str, str]]] = []
        self.predicted = 0
        self.last_diag: tuple[int, dict[str, str]] | None = None
        self.last_task: dict[str, Any] | None = None
        self.joint_states_seen = 0
        self._joint_index: tuple[tuple[str, ...], list[int]] | None = None
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.create_subscription(
            JointState, DEFAULT_TOPICS['joint_states'], self._on_joints, reliable
        )
        self.create_subscription(
            JointTrajectory, DEFAULT_TOPICS['command'], self._on_command, reliable
        )
        self.create_subscription(
            JointTrajectory,
            f'/{POLICY_NODE_NAME}/predicted_trajectory',
            self._on_predicted,
            reliable,
        )
        self.create_subscription(String, DEFAULT_TOPICS['task_state'], self._on_task, reliable)
        self.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, reliable)
        self.enable_client: Any = self.create_client(SetBool, f'/{POLICY_NODE_NAME}/enable')
        self.reset_client: Any = self.create_client(Trigger, f'/{POLICY_NODE_NAME}/reset')
        self.sim_params_client: Any = self.create_client(
            SetParameters, f'/{SIM_NODE_NAME}/set_parameters'
        )

    def now_ns(self) -> int:
        """Return this node's clock in integer nanoseconds."""
        return now_ns(self)

    def clear(self) -> None:
        """Forget the recorded traces (a new episode)."""
        with self._lock:
            self.joints, self.commands, self.tasks, self.diagnostics = [], [], [], []
            self.predicted = 0

    def last_diag_values(self) -> dict[str, str] | None:
        """Return the values of the policy node's last ``/diagnostics`` status (None: none yet)."""
        last = self.last_diag
        return last[1] if last is not None else None

    def _on_joints(self, msg: JointState) -> None:
        stamp = self.now_ns()
        names = tuple(msg.name)
        cached = self._joint_index
        if cached is None or cached[0] != names:
            index = joint_index(names)
            if index is None:
                return
            cached = (names, index)
            self._joint_index = cached
        idx = cached[1]
        q = [float(msg.position[i]) for i in idx]
        dq = [float(msg.velocity[i]) for i in idx] if len(msg.velocity) == len(names) else []
        with self._lock:
            self.joints.append((stamp, q, dq))
            self.joint_states_seen += 1

    def _on_command(self, msg: JointTrajectory) -> None:
        with self._lock:
            self.commands.append((self.now_ns(), msg))

    def _on_predicted(self, msg: JointTrajectory) -> None:
        with self._lock:
            self.predicted += 1

    def _on_task(self, msg: String) -> None:
        state = task_state_from_msg(msg)
        if state is None:
            return
        with self._lock:
            self.tasks.append((self.now_ns(), state))
            self.last_task = state

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        stamp = self.now_ns()
        for status in msg.status:
            if status.name == POLICY_STATUS_NAME:
                values = {kv.key: kv.value for kv in status.values}
                with self._lock:
                    self.diagnostics.append((stamp, values))
                    self.last_diag = (stamp, values)

    def snapshot(self) -> RecordSnapshot:
        """Return copies of everything recorded since ``clear()``."""
        with self._lock:
            return {
                'joints': list(self.joints),
                'commands': list(self.commands),
                'tasks': list(self.tasks),
                'diagnostics': list(self.diagnostics),
                'predicted': self.predicted,
            }
