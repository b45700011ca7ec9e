"""
A DDS domain of one's own for tests and benchmarks: claimed with a lock file, never shared.

Two test sessions that run at the same time on one machine must not see each other's nodes:
a domain id derived from the pid can collide (``pid % 100``). :func:`claim_domain_id` takes the
first free id of a range by locking ``<lock_dir>/domain_<id>.lock`` (``fcntl.flock``): the lock
is held as long as the process lives (or until :meth:`DomainClaim.release`) and the kernel drops
it when the process dies, so a crashed run never leaves an id taken.
"""

from __future__ import annotations

from dataclasses import dataclass
import fcntl
import os
from pathlib import Path
import tempfile
from typing import IO

from kinova_policy_ros.core.errors import ConfigError

__all__ = ['DomainClaim', 'claim_domain_id']

# Fast DDS and Cyclone DDS map ids 0..101 to ports below the ephemeral range on Linux; 0 is the
# default domain every other ROS 2 process on the machine uses, so it is never claimed.
FIRST_ID = 1
LAST_ID = 101


@dataclass
class DomainClaim:
    """A claimed domain id; the lock file stays locked while this object holds it."""

    domain_id: int
    lock_path: Path
    _file: IO[bytes] | None

    def release(self) -> None:
        """Give the id back (also done by the kernel when the process ends)."""
        if self._file is not None:
            self._file.close()
            self._file = None


def default_lock_dir() -> Path:
    """``$TMPDIR/kinova_policy_ros_dds`` (shared by every user of the machine's temp folder)."""
    return Path(tempfile.gettempdir()) / 'kinova_policy_ros_dds'


def claim_domain_id(
    lock_dir: Path | None = None, first: int = FIRST_ID, last: int = LAST_ID
) -> DomainClaim:
    """Lock and return the first free domain id in ``first..last`` (inclusive)."""
    if not 0 <= first <= last <= 232:
        raise ConfigError(f'claim_domain_id: the range {first}..{last} is not within 0..232')
    lock_dir = default_lock_dir() if lock_dir is None else lock_dir
    lock_dir.mkdir(parents=True, exist_ok=True)
    for domain_id in range(first, last + 1):
        path = lock_dir / f'domain_{domain_id}.lock'
        f = open(path, 'ab')  # held open: the lock lives as long as the file
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            continue
        f.truncate(0)
        f.write(f'{os.getpid()}\n'.encode())
        f.flush()
        return DomainClaim(domain_id, path, f)
    raise ConfigError(
        f'claim_domain_id: every DDS domain id in {first}..{last} is taken '
        f'(lock files in {lock_dir}); end the other runs or set ROS_DOMAIN_ID yourself'
    )
