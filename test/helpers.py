"""Small shared helpers for the tests (import as ``from helpers import ...``)."""

from collections.abc import Iterator
import contextlib
from pathlib import Path
import signal

from kinova_policy_ros.data.schema import Episode
from kinova_policy_ros.testing.synthetic import make_episode


def episode_arrays(seed: int = 0, num_frames: int = 12, hw: tuple[int, int] = (16, 20)) -> dict:
    """Return a valid episode as a dict of arrays (copies: safe to corrupt)."""
    return {k: v.copy() for k, v in make_episode(seed, num_frames, hw).to_arrays().items()}


def small_episode(seed: int = 0, num_frames: int = 12, hw: tuple[int, int] = (16, 20)) -> Episode:
    return make_episode(seed, num_frames, hw)


def ls(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


@contextlib.contextmanager
def bounded(seconds: int = 10) -> Iterator[None]:
    """Fail the case (TimeoutError) instead of hanging when it runs longer than ``seconds``."""

    def _expired(signum: int, frame: object) -> None:
        raise TimeoutError(f'case still running after {seconds} s')

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
