"""A DDS domain id of one's own, claimed with a lock file (kinova_policy_ros.testing.dds)."""

import os
from pathlib import Path
import re
import subprocess
import sys

from kinova_policy_ros.core.errors import ConfigError
from kinova_policy_ros.testing.dds import claim_domain_id, default_lock_dir, FIRST_ID, LAST_ID
import pytest

# Ids far from the ones test sessions take (they claim from FIRST_ID up, in another folder).
FIRST, LAST = 200, 203

HOLDER = """
import sys
from pathlib import Path
from kinova_policy_ros.testing.dds import claim_domain_id
claim = claim_domain_id(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
print(claim.domain_id, flush=True)
sys.stdin.readline()  # hold the claim until the test lets go
"""


def test_two_claims_in_one_process_get_different_ids(tmp_path: Path):
    a = claim_domain_id(tmp_path, FIRST, LAST)
    b = claim_domain_id(tmp_path, FIRST, LAST)
    assert (a.domain_id, b.domain_id) == (FIRST, FIRST + 1)
    assert a.lock_path == tmp_path / f'domain_{FIRST}.lock'
    assert a.lock_path.read_text() == f'{os.getpid()}\n'
    a.release()
    b.release()


def test_a_released_claim_is_free_again(tmp_path: Path):
    a = claim_domain_id(tmp_path, FIRST, LAST)
    a.release()
    a.release()  # idempotent
    b = claim_domain_id(tmp_path, FIRST, LAST)
    assert b.domain_id == a.domain_id == FIRST
    b.release()


def test_a_claim_held_by_another_process_is_skipped(tmp_path: Path):
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join(sys.path)}
    holder = subprocess.Popen(
        [sys.executable, '-c', HOLDER, str(tmp_path), str(FIRST), str(LAST)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == str(FIRST)
        mine = claim_domain_id(tmp_path, FIRST, LAST)
        assert mine.domain_id == FIRST + 1
        mine.release()
    finally:
        holder.communicate('\n', timeout=60)
    assert holder.returncode == 0
    # the kernel dropped the holder's lock when it ended
    again = claim_domain_id(tmp_path, FIRST, LAST)
    assert again.domain_id == FIRST
    again.release()


def test_an_exhausted_range_names_the_lock_dir(tmp_path: Path):
    held = [claim_domain_id(tmp_path, FIRST, FIRST + 1) for _ in range(2)]
    assert [c.domain_id for c in held] == [FIRST, FIRST + 1]
    where = re.escape(str(tmp_path))
    message = rf'every DDS domain id in 200\.\.201 is taken \(lock files in {where}\)'
    with pytest.raises(ConfigError, match=message):
        claim_domain_id(tmp_path, FIRST, FIRST + 1)
    for c in held:
        c.release()


@pytest.mark.parametrize(('first', 'last'), [(-1, 5), (5, 4), (0, 233)])
def test_a_range_outside_the_dds_ids_is_refused(tmp_path: Path, first: int, last: int):
    with pytest.raises(ConfigError, match=rf'the range {first}\.\.{last} is not within 0\.\.232'):
        claim_domain_id(tmp_path, first, last)
    assert list(tmp_path.iterdir()) == []


def test_defaults():
    assert (FIRST_ID, LAST_ID) == (1, 101)  # never 0, the default domain of every ROS 2 process
    assert default_lock_dir().name == 'kinova_policy_ros_dds'
    assert default_lock_dir().parent.is_dir()
