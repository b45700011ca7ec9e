"""
State of the policy node and its ``/diagnostics`` status.

:class:`NodeStatus` holds what the node reports (its state, whether commands are enabled, the
plan counters and the recent inference latencies), shared between the executor thread and the
control thread; :func:`diagnostic_array` turns a snapshot of it into the
``diagnostic_msgs/DiagnosticArray`` the node publishes.
"""

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
import threading

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from kinova_policy_ros.ros.messages import time_msg
import numpy as np

__all__ = [
    'DISABLED',
    'ERROR',
    'FAULT_STATES',
    'INVALID',
    'LATENCY_WINDOW',
    'LEVELS',
    'RUNNING',
    'STALE',
    'WAITING',
    'NodeStatus',
    'StatusSnapshot',
    'diagnostic_array',
    'diagnostic_values',
]

# Node states (reported on /diagnostics).
WAITING = 'waiting for inputs'
RUNNING = 'running'
DISABLED = 'disabled'
STALE = 'stale input'
INVALID = 'invalid input'
ERROR = 'error'

FAULT_STATES = (STALE, INVALID, ERROR)
"""States in which the node warns and starts from a clean observation buffer afterwards."""

LEVELS: dict[str, bytes] = {
    WAITING: DiagnosticStatus.WARN,
    RUNNING: DiagnosticStatus.OK,
    DISABLED: DiagnosticStatus.OK,
    STALE: DiagnosticStatus.WARN,
    INVALID: DiagnosticStatus.ERROR,
    ERROR: DiagnosticStatus.ERROR,
}

LATENCY_WINDOW = 500
"""Inference latencies kept for the percentiles on /diagnostics."""


@dataclass(frozen=True)
class StatusSnapshot:
    """A consistent copy of :class:`NodeStatus` (taken under its lock)."""

    state: str
    detail: str
    enabled: bool
    plans: int
    commands_published: int
    points_dropped: int
    latencies_s: tuple[float, ...]


class NodeStatus:
    """
    The node state, the enable switch and the plan counters (thread-safe).

    The executor thread (services, diagnostics timer) and the control thread both read and write
    it; every method takes the lock once.
    """

    def __init__(self, enabled: bool) -> None:
        self._lock = threading.Lock()
        self._enabled = bool(enabled)
        self._state = WAITING
        self._detail = 'no input received yet'
        self._latencies_s: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._plans = 0
        self._commands_published = 0
        self._points_dropped = 0

    @property
    def state(self) -> str:
        """Return the node's current state, one of the module's constants."""
        with self._lock:
            return self._state

    @property
    def enabled(self) -> bool:
        """Return whether commands are published (``~/enable``)."""
        with self._lock:
            return self._enabled

    def set_enabled(self, enabled: bool) -> bool:
        """Switch commands on or off; return the previous setting."""
        with self._lock:
            was = self._enabled
            self._enabled = bool(enabled)
        return was

    def set_state(self, state: str, detail: str) -> bool:
        """
        Record the state; return whether /diagnostics should report it now.

        A report is due when the state changes, and on every new detail of
        :data:`INVALID` / :data:`ERROR` (a new error); a repeated state waits for the periodic
        report.
        """
        with self._lock:
            changed = (state, detail) != (self._state, self._detail)
            old = self._state
            self._state, self._detail = state, detail
        return changed and (state != old or state in (INVALID, ERROR))

    def record_plan(self, latency_s: float, published: bool, points_dropped: int) -> None:
        """Count one plan: its latency, whether it went out as a command, points dropped."""
        with self._lock:
            self._latencies_s.append(float(latency_s))
            self._plans += 1
            self._commands_published += bool(published)
            self._points_dropped += int(points_dropped)

    def snapshot(self) -> StatusSnapshot:
        """Return a consistent copy of everything reported."""
        with self._lock:
            return StatusSnapshot(
                state=self._state,
                detail=self._detail,
                enabled=self._enabled,
                plans=self._plans,
                commands_published=self._commands_published,
                points_dropped=self._points_dropped,
                latencies_s=tuple(self._latencies_s),
            )


def _age(now_ns: int, stamp_ns: int) -> str:
    return f'{(now_ns - stamp_ns) * 1e-9:.3f}' if stamp_ns else 'inf'


def diagnostic_values(
    snap: StatusSnapshot,
    input_stamps_ns: Mapping[str, int],
    now_ns: int,
    overruns: int,
    dry_run: bool,
) -> dict[str, str]:
    """
    Return the key/value pairs of the status, in the order they are published.

    :param input_stamps_ns: ``{input: receipt time}`` (0 = nothing received), reported as
        ``<input>_age_s``.
    """
    values = {'state': snap.state, 'detail': snap.detail, 'enabled': str(snap.enabled).lower()}
    for key, stamp_ns in input_stamps_ns.items():
        values[f'{key}_age_s'] = _age(now_ns, stamp_ns)
    if snap.latencies_s:
        lat = np.array(snap.latencies_s, dtype=np.float64)
        values['inference_latency_p50_ms'] = f'{np.percentile(lat, 50) * 1e3:.2f}'
        values['inference_latency_p99_ms'] = f'{np.percentile(lat, 99) * 1e3:.2f}'
    values['plans'] = str(snap.plans)
    values['commands_published'] = str(snap.commands_published)
    values['points_dropped_for_latency'] = str(snap.points_dropped)
    values['control_overruns'] = str(overruns)
    values['dry_run'] = str(dry_run).lower()
    return values


def diagnostic_array(
    name: str,
    snap: StatusSnapshot,
    input_stamps_ns: Mapping[str, int],
    now_ns: int,
    overruns: int,
    dry_run: bool,
) -> DiagnosticArray:
    """Return the ``/diagnostics`` message of one status (stamped ``now_ns``)."""
    status = DiagnosticStatus()
    status.level = LEVELS[snap.state]
    status.name = name
    status.hardware_id = 'kinova_gen3'
    status.message = snap.state + (f': {snap.detail}' if snap.detail else '')
    values = diagnostic_values(snap, input_stamps_ns, now_ns, overruns, dry_run)
    status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
    msg = DiagnosticArray()
    msg.header.stamp = time_msg(now_ns)
    msg.status = [status]
    return msg
