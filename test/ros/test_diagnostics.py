"""Tests of kinova_policy_ros.ros.diagnostics: the node state and its /diagnostics status."""

from dataclasses import replace
import threading

from diagnostic_msgs.msg import DiagnosticStatus
from kinova_policy_ros.core.stamps import stamp_to_ns
from kinova_policy_ros.ros.diagnostics import (
    diagnostic_array,
    diagnostic_values,
    DISABLED,
    ERROR,
    INVALID,
    LATENCY_WINDOW,
    LEVELS,
    NodeStatus,
    RUNNING,
    STALE,
    StatusSnapshot,
    WAITING,
)
import numpy as np
import pytest

S = 1_000_000_000


def test_a_new_status_waits_for_inputs():
    snap = NodeStatus(enabled=False).snapshot()
    assert (snap.state, snap.detail, snap.enabled) == (WAITING, 'no input received yet', False)
    assert (snap.plans, snap.commands_published, snap.points_dropped) == (0, 0, 0)
    assert snap.latencies_s == ()
    assert NodeStatus(enabled=True).enabled


def test_set_enabled_returns_the_previous_setting():
    status = NodeStatus(enabled=False)
    assert status.set_enabled(True) is False
    assert status.enabled
    assert status.set_enabled(True) is True
    assert status.set_enabled(False) is True
    assert not status.snapshot().enabled


def test_a_report_is_due_on_a_new_state_or_a_new_error():
    status = NodeStatus(enabled=True)
    assert status.set_state(RUNNING, '')  # waiting -> running
    assert not status.set_state(RUNNING, '')  # unchanged
    assert status.set_state(STALE, '/cam (0.300 s old)')
    assert not status.set_state(STALE, '/cam (0.350 s old)')  # same state, new detail
    assert status.state == STALE and status.snapshot().detail == '/cam (0.350 s old)'
    assert status.set_state(INVALID, 'bad frame')
    assert not status.set_state(INVALID, 'bad frame')
    assert status.set_state(INVALID, 'another bad frame')  # a new error is reported at once
    assert status.set_state(ERROR, 'no command: x')
    assert status.set_state(ERROR, 'no command: y')
    assert not status.set_state(ERROR, 'no command: y')
    assert status.set_state(DISABLED, 'call ~/enable to publish commands')
    assert not status.set_state(DISABLED, 'call ~/enable to publish commands')


def test_plans_are_counted_and_latencies_kept_up_to_the_window():
    status = NodeStatus(enabled=True)
    status.record_plan(0.010, True, 0)
    status.record_plan(0.020, False, 2)
    status.record_plan(0.030, True, 1)
    snap = status.snapshot()
    assert (snap.plans, snap.commands_published, snap.points_dropped) == (3, 2, 3)
    assert snap.latencies_s == (0.010, 0.020, 0.030)
    for i in range(LATENCY_WINDOW + 7):
        status.record_plan(float(i), True, 0)
    kept = status.snapshot().latencies_s
    assert len(kept) == LATENCY_WINDOW and kept[-1] == float(LATENCY_WINDOW + 6)
    assert kept[0] == 7.0


def test_concurrent_updates_are_all_counted():
    status = NodeStatus(enabled=True)

    def record() -> None:
        for _ in range(1000):
            status.record_plan(0.001, True, 1)

    threads = [threading.Thread(target=record) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    snap = status.snapshot()
    assert (snap.plans, snap.commands_published, snap.points_dropped) == (4000, 4000, 4000)


BASE = StatusSnapshot(
    state=RUNNING,
    detail='',
    enabled=True,
    plans=5,
    commands_published=4,
    points_dropped=3,
    latencies_s=(),
)


def _snapshot(**changes: object) -> StatusSnapshot:
    return replace(BASE, **changes)


def test_values_report_ages_counters_and_flags_in_order():
    stamps = {'rgb': 9 * S, 'depth': 0, 'joints': 10 * S - 1_500_000}
    values = diagnostic_values(_snapshot(), stamps, 10 * S, overruns=2, dry_run=True)
    assert list(values) == [
        'state',
        'detail',
        'enabled',
        'rgb_age_s',
        'depth_age_s',
        'joints_age_s',
        'plans',
        'commands_published',
        'points_dropped_for_latency',
        'control_overruns',
        'dry_run',
    ]
    assert values['rgb_age_s'] == '1.000'
    assert values['depth_age_s'] == 'inf'  # never received
    assert values['joints_age_s'] == '0.002'
    assert (values['plans'], values['commands_published']) == ('5', '4')
    assert (values['points_dropped_for_latency'], values['control_overruns']) == ('3', '2')
    assert (values['enabled'], values['dry_run']) == ('true', 'true')


def test_values_report_latency_percentiles_in_ms():
    lat = tuple(np.linspace(0.001, 0.1, 100))
    values = diagnostic_values(_snapshot(latencies_s=lat), {}, 0, 0, False)
    assert values['inference_latency_p50_ms'] == f'{np.percentile(lat, 50) * 1e3:.2f}'
    assert values['inference_latency_p99_ms'] == f'{np.percentile(lat, 99) * 1e3:.2f}'
    assert values['inference_latency_p50_ms'] == '50.50'
    assert float(values['inference_latency_p99_ms']) > 99.0
    assert list(values).index('inference_latency_p99_ms') < list(values).index('plans')


@pytest.mark.parametrize('state', list(LEVELS))
def test_array_has_the_level_of_each_state(state: str):
    msg = diagnostic_array('kinova_policy: policy', _snapshot(state=state), {}, 0, 0, False)
    assert msg.status[0].level == LEVELS[state]


def test_levels_warn_while_waiting_or_stale_and_fail_on_errors():
    assert LEVELS[WAITING] == LEVELS[STALE] == DiagnosticStatus.WARN
    assert LEVELS[RUNNING] == LEVELS[DISABLED] == DiagnosticStatus.OK
    assert LEVELS[INVALID] == LEVELS[ERROR] == DiagnosticStatus.ERROR


def test_array_names_the_node_and_carries_message_values_and_stamp():
    snap = _snapshot(state=STALE, detail='/cam (1.000 s old)')
    msg = diagnostic_array('my_policy: policy', snap, {'rgb': S}, 2 * S + 5, 1, False)
    assert stamp_to_ns(msg.header.stamp) == 2 * S + 5
    assert len(msg.status) == 1
    status = msg.status[0]
    assert status.name == 'my_policy: policy'
    assert status.hardware_id == 'kinova_gen3'
    assert status.message == 'stale input: /cam (1.000 s old)'
    values = {kv.key: kv.value for kv in status.values}
    assert values['state'] == STALE and values['rgb_age_s'] == '1.000'
    assert values['control_overruns'] == '1' and values['dry_run'] == 'false'
    running = diagnostic_array('n: policy', _snapshot(), {}, 0, 0, False).status[0]
    assert running.message == 'running'  # no detail, no colon
