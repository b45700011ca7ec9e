"""Small shared helpers for the tests (import as ``from helpers import ...``)."""

from pathlib import Path

from kinova_policy_ros.data.schema import Episode
from kinova_policy_ros.testing.synthetic import make_episode


def episode_arrays(seed: int = 0, num_frames: int = 12, hw: tuple[int, int] = (16, 20)) -> dict:
    """Return a valid episode as a dict of arrays (copies: safe to corrupt)."""
    return {k: v.copy() for k, v in make_episode(seed, num_frames, hw).to_arrays().items()}


def small_episode(seed: int = 0, num_frames: int = 12, hw: tuple[int, int] = (16, 20)) -> Episode:
    return make_episode(seed, num_frames, hw)


def ls(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())
