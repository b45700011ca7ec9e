"""
Hostile npz episodes (hypothesis): bit flips, truncation, wrong types, pickled members.

Each mutated file either loads as a valid episode or raises :class:`SchemaError` naming the
file; no other exception and no hang (each case runs under an alarm). An npz member holding a
pickle (an object array) is refused, never unpickled.
"""

import io
from pathlib import Path
import zipfile

from helpers import bounded, episode_arrays
from hypothesis import given, HealthCheck, settings
from hypothesis import strategies as st
from kinova_policy_ros.core.errors import SchemaError
from kinova_policy_ros.data.schema import load_episode, save_episode
from kinova_policy_ros.testing.synthetic import make_episode
import numpy as np
import pytest

CASES = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope='module', params=[False, True], ids=['stored', 'compressed'])
def pristine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp('npz') / 'episode.npz'
    save_episode(path, make_episode(0, 6, (8, 10)), compress=request.param)
    return path.read_bytes()


@CASES
@given(
    kind=st.sampled_from(['flip', 'cut']),
    where=st.sampled_from(['start', 'header', 'middle', 'end']),
    offsets=st.lists(st.integers(0, 2**20), min_size=1, max_size=8),
)
def test_mutated_npz_loads_or_names_the_file(
    pristine: bytes, tmp_path_factory: pytest.TempPathFactory, kind: str, where: str,
    offsets: list[int],
) -> None:
    """Bit flips / a cut in the first bytes, a zip header, the middle or the central directory."""
    data = bytearray(pristine)
    n = len(data)
    span = {'start': (0, 4), 'header': (4, 128), 'middle': (128, n - 128), 'end': (n - 128, n)}
    lo, hi = span[where]
    at = [lo + o % (hi - lo) for o in offsets]
    if kind == 'flip':
        for i, p in enumerate(at):
            data[p] ^= 1 << (i % 8)
    else:
        del data[at[0]:]
    path = tmp_path_factory.mktemp('case') / 'episode.npz'
    path.write_bytes(bytes(data))
    with bounded():
        try:
            episode = load_episode(path)
        except SchemaError as err:
            assert str(path) in str(err), str(err)
            return
    assert episode.num_frames == 6  # a flip that only touched e.g. a timestamp still validates


def _with_member(tmp_path: Path, name: str, member: bytes) -> Path:
    path = tmp_path / 'episode.npz'
    save_episode(path, make_episode(0, 4, (8, 10)))
    with zipfile.ZipFile(path, 'a') as z:
        z.writestr(name, member)
    return path


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


class _Boom:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ('unpickled!',))


def test_pickled_member_is_refused_not_unpickled(tmp_path: Path, capsys) -> None:
    """An object-array member (a pickle that would run code) is a SchemaError naming the file."""
    path = _with_member(tmp_path, 'extra.npy', _npy(np.array([_Boom()], dtype=object)))
    with pytest.raises(SchemaError, match=rf'{path}: cannot read npz episode:.*allow_pickle'):
        load_episode(path)
    assert 'unpickled!' not in capsys.readouterr().out


@pytest.mark.parametrize(
    ('key', 'value', 'message'),
    [
        ('q', np.array(['a'] * 6), "key 'q'"),
        ('rgb', np.zeros((6, 8, 10), np.float64), "key 'rgb'"),
        ('stamp_ns', np.zeros(6, np.float32), "key 'stamp_ns'"),
        ('depth', np.full((6, 8, 10), np.nan, np.float32), "key 'depth'"),
    ],
)
def test_member_of_the_wrong_type_names_the_key(
    tmp_path: Path, key: str, value: np.ndarray, message: str
) -> None:
    arrays = episode_arrays(num_frames=6, hw=(8, 10))
    arrays[key] = value
    path = tmp_path / 'episode.npz'
    np.savez(path, **arrays)
    with pytest.raises(SchemaError, match=rf'{path}.*{message}'):
        load_episode(path)


def test_corrupt_deflate_stream_is_a_schema_error(tmp_path: Path) -> None:
    """Regression: a flipped bit inside a compressed member escaped as zlib.error."""
    path = tmp_path / 'episode.npz'
    save_episode(path, make_episode(0, 6, (8, 10)), compress=True)
    with zipfile.ZipFile(path) as z:
        info = z.getinfo('rgb.npy')
    data = bytearray(path.read_bytes())
    off = info.header_offset  # the local header's own name and extra lengths
    names, extra = (int.from_bytes(data[off + i:off + i + 2], 'little') for i in (26, 28))
    data[off + 30 + names + extra + 2] ^= 0xFF  # inside rgb.npy's deflate stream
    path.write_bytes(bytes(data))
    with pytest.raises(SchemaError, match=rf'{path}: cannot read npz episode'):
        load_episode(path)
