"""Stop requests: SIGINT / SIGTERM become a flag; the handlers go in for the node entry points."""

import os
import signal
import time

from kinova_policy_ros.ros import signals


def test_entry_points_are_recognised_by_module_or_script_name():
    sim = 'kinova_policy_ros.sim.ros.sim_node'
    assert signals.entry_point(['python', '-m', sim, '--ros-args'], ['-m']) == sim
    assert signals.entry_point(['/usr/bin/sim_expert'], ['/usr/bin/sim_expert']) == 'sim_expert'
    assert signals.entry_point(['python', '-m', 'pytest'], ['x']) == 'pytest'
    assert {sim, 'sim_node', 'sim_expert'} <= signals.ENTRY_POINTS
    assert 'pytest' not in signals.ENTRY_POINTS
    assert not signals.install_for_entry_point()  # this test process is pytest


def test_sigterm_becomes_a_stop_request_and_the_handlers_are_restored():
    before = signal.getsignal(signal.SIGTERM)
    previous = signals.install()
    try:
        assert signal.getsignal(signal.SIGTERM) is signals.request_stop
        signals._stop.clear()
        os.kill(os.getpid(), signal.SIGTERM)
        end = time.monotonic() + 5.0
        while not signals.stop_requested() and time.monotonic() < end:
            time.sleep(0.01)
        assert signals.stop_requested()
    finally:
        signals.restore(previous)
        signals._stop.clear()
    assert signal.getsignal(signal.SIGTERM) == before
