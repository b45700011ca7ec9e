"""Tests of kinova_policy_ros.ros.control_thread: one step per wake, merged wakes, errors, stop."""

from collections.abc import Iterator
import threading

from helpers import wait_for
from kinova_policy_ros.ros.control_thread import ControlThread
import pytest

DEADLINE_S = 10.0  # generous: only a hung thread gets near it


class Steps:
    """A step function that counts calls and can hold a call until released."""

    def __init__(self) -> None:
        self.calls = 0
        self.started = threading.Event()
        self.gate = threading.Event()
        self.gate.set()
        self.errors: list[Exception] = []
        self.fail_next = False

    def step(self) -> None:
        self.calls += 1
        self.started.set()
        assert self.gate.wait(DEADLINE_S)
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError(f'step {self.calls} failed')


@pytest.fixture
def steps() -> Steps:
    return Steps()


@pytest.fixture
def control(steps: Steps) -> Iterator[ControlThread]:
    ct = ControlThread(steps.step, steps.errors.append, name='control_test')
    ct.start()
    try:
        yield ct
    finally:
        steps.gate.set()
        ct.stop()


def test_each_wake_runs_one_step(steps: Steps, control: ControlThread):
    assert steps.calls == 0
    for n in (1, 2, 3):
        steps.started.clear()
        control.wake()
        assert steps.started.wait(DEADLINE_S)
        assert wait_for(lambda n=n: steps.calls == n)
    control.stop()
    assert steps.calls == 3 and control.overruns == 0 and steps.errors == []


def test_wakes_during_a_step_merge_into_one_and_count_as_overruns(
    steps: Steps, control: ControlThread
):
    steps.gate.clear()
    control.wake()
    assert steps.started.wait(DEADLINE_S)  # step 1 holds
    control.wake()  # pending: runs after step 1
    control.wake()  # merged into the pending one
    control.wake()  # merged too
    assert control.overruns == 2
    steps.gate.set()
    assert wait_for(lambda: steps.calls == 2)
    control.stop()
    assert steps.calls == 2 and control.overruns == 2


def test_a_failing_step_is_reported_and_the_thread_carries_on(
    steps: Steps, control: ControlThread
):
    steps.fail_next = True
    control.wake()
    assert wait_for(lambda: len(steps.errors) == 1)
    assert isinstance(steps.errors[0], RuntimeError)
    assert str(steps.errors[0]) == 'step 1 failed'
    assert control.is_alive()
    control.wake()
    assert wait_for(lambda: steps.calls == 2)
    control.stop()
    assert len(steps.errors) == 1


def test_stop_ends_the_thread_after_the_current_step_and_is_idempotent(
    steps: Steps, control: ControlThread
):
    steps.gate.clear()
    control.wake()
    assert steps.started.wait(DEADLINE_S)
    stopper = threading.Thread(target=control.stop)
    stopper.start()
    assert control.is_alive()  # still inside step 1
    steps.gate.set()
    stopper.join(DEADLINE_S)
    assert not stopper.is_alive() and not control.is_alive()
    control.stop()
    control.wake()  # after stop: no step
    assert steps.calls == 1


def test_stop_from_the_step_itself_does_not_wait_for_itself():
    holder: list[ControlThread] = []
    calls: list[int] = []

    def step() -> None:
        calls.append(1)
        holder[0].stop()  # would deadlock if stop joined its own thread

    ct = ControlThread(step, lambda err: None)
    holder.append(ct)
    ct.start()
    ct.wake()
    assert wait_for(lambda: not ct.is_alive())
    assert calls == [1]
