"""
The control thread of the policy node: runs a control step each time it is woken.

The executor thread (the control timer, or each RGB message in the benchmark mode) calls
:meth:`ControlThread.wake` and returns at once; the thread runs the step outside the executor,
never concurrently with itself. A wake that arrives before the thread took the previous one is
merged into it and counted as an overrun.

Why a plain thread and not a MultiThreadedExecutor with callback groups: rclpy's executor
busy-polls its wait set while a ready callback waits for its busy mutually exclusive group (the
control timer or trigger during inference), which takes the GIL and a core away from the model
and turned a 7 ms step into tens or hundreds of milliseconds on a 2-core machine.
"""

from collections.abc import Callable
import threading

__all__ = ['ControlThread']


class ControlThread:
    """
    A daemon thread that calls ``step`` once per :meth:`wake` (wakes during a step merge).

    :param step: the control step; an exception it raises goes to ``on_error`` and the thread
        carries on with the next wake.
    :param on_error: called (on the control thread) with the exception of a failed step.
    :param name: the thread name.
    """

    def __init__(
        self,
        step: Callable[[], None],
        on_error: Callable[[Exception], None],
        name: str = 'kinova_policy_control',
    ) -> None:
        self._step = step
        self._on_error = on_error
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._stopping = False
        self._overruns = 0
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    @property
    def overruns(self) -> int:
        """Return how many wakes were merged into a pending one."""
        with self._lock:
            return self._overruns

    def is_alive(self) -> bool:
        """Return whether the thread runs."""
        return self._thread.is_alive()

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def wake(self) -> None:
        """Ask for a step (returns at once)."""
        if self._wake.is_set():
            with self._lock:
                self._overruns += 1  # the previous wake has not been taken yet: merged into it
        self._wake.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the thread after its current step (idempotent; no wait from the thread itself)."""
        self._stopping = True
        self._wake.set()
        thread = self._thread
        if thread.is_alive() and threading.current_thread() is not thread:
            thread.join(timeout_s)

    def _loop(self) -> None:
        while True:
            self._wake.wait()  # stop() sets it too
            self._wake.clear()
            if self._stopping:
                break
            try:
                self._step()
            except Exception as err:  # keep the thread alive; on_error reports it
                self._on_error(err)
