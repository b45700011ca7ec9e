"""
Fuzz tests of the converter under mutated recordings (hypothesis).

A small synthetic bag (sqlite3 and mcap) gets bit flips, truncation at several offset classes
(the first bytes, the header, the middle, the last bytes), a deleted storage file or
metadata.yaml, or a metadata.yaml of garbage or wrong types. Each case either converts to
episodes that load and validate, or raises a :class:`KinovaPolicyError` naming the bag; it
never leaves a file (a partial npz, a temp file) in the output folder, and it never hangs
(each case runs under an alarm).
"""

from dataclasses import replace
from pathlib import Path
import shutil

from helpers import bounded
from hypothesis import given, HealthCheck, settings
from hypothesis import strategies as st
from kinova_policy_ros.bag.convert import convert_bag
from kinova_policy_ros.bag.options import ConvertOptions
from kinova_policy_ros.core.errors import KinovaPolicyError
from kinova_policy_ros.data.schema import load_episode
from kinova_policy_ros.testing import bag_synthetic as syn
import pytest

CASES = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
OPTS = replace(ConvertOptions(), progress=False)
BAG_SPEC = syn.SynthSpec(n_frames=6, height=12, width=16)


@pytest.fixture(scope='module', params=['sqlite3', 'mcap'])
def pristine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    bag = tmp_path_factory.mktemp('fuzz') / f'bag_{request.param}'
    syn.write_bag(bag, replace(BAG_SPEC, storage=request.param))
    return bag


@st.composite
def mutations(draw: st.DrawFn) -> tuple[str, int, list[int]]:
    """Draw (what to do, which file, positions): flips, a cut, a deletion or a garbage yaml."""
    kind = draw(st.sampled_from(['flip', 'cut', 'delete', 'yaml_garbage', 'yaml_types']))
    target = draw(st.sampled_from([0, 1]))  # 0: the storage file, 1: metadata.yaml
    where = draw(st.sampled_from(['start', 'header', 'middle', 'end']))
    span = {'start': (0, 0), 'header': (1, 64), 'middle': (65, 10**9), 'end': (-64, -1)}[where]
    positions = draw(st.lists(st.integers(*span), min_size=1, max_size=8))
    return kind, target, positions


def _mutate(bag: Path, kind: str, target: int, positions: list[int]) -> None:
    storage = next(p for p in bag.iterdir() if p.name != 'metadata.yaml')
    meta = bag / 'metadata.yaml'
    file = (storage, meta)[target]
    data = bytearray(file.read_bytes())
    at = [p % len(data) for p in positions]
    if kind == 'flip':
        for i, p in enumerate(at):
            data[p] ^= 1 << (i % 8)
        file.write_bytes(bytes(data))
    elif kind == 'cut':
        file.write_bytes(bytes(data[: at[0]]))
    elif kind == 'delete':
        file.unlink()
    elif kind == 'yaml_garbage':
        text = meta.read_bytes()
        cut = at[0] % len(text)
        meta.write_bytes(text[:cut] + b'\t: [{\n- ' + text[cut:])
    else:  # a value of the wrong type where a mapping, list or number is expected
        text = meta.read_text()
        for key in ('storage_identifier:', 'relative_file_paths:', 'message_count:', 'topic:'):
            if key in text and at[0] % 2 == 0:
                text = text.replace(key, f'{key} [[1, 2]] #', 1)
                break
        else:
            text = text.replace('rosbag2_bagfile_information:', 'rosbag2_bagfile_information: 7')
        meta.write_text(text)


@CASES
@given(mutation=mutations())
def test_mutated_bag_converts_or_names_the_bag(
    pristine: Path, tmp_path_factory: pytest.TempPathFactory, mutation: tuple[str, int, list[int]]
) -> None:
    """Converted episodes load and validate, or a typed error naming the bag; no output left."""
    work = tmp_path_factory.mktemp('case')
    bag, out = work / pristine.name, work / 'out'
    shutil.copytree(pristine, bag)
    _mutate(bag, *mutation)
    out.mkdir()
    try:
        with bounded(20):
            try:
                paths, _ = convert_bag(bag, out, OPTS)
            except KinovaPolicyError as err:
                assert bag.name in str(err), str(err)
                assert sorted(out.iterdir()) == [], 'a failed conversion left files'
                return
        assert paths
        reports = [p.with_suffix('.json') for p in paths]  # the bag's report next to each
        assert set(out.iterdir()) <= {*paths, *reports} and set(paths) <= set(out.iterdir())
        for path in paths:
            assert load_episode(path).num_frames >= OPTS.min_frames
    finally:
        shutil.rmtree(work)


def test_metadata_that_is_not_utf8_is_a_bag_error(pristine: Path, tmp_path: Path) -> None:
    """A metadata.yaml that is not text is a BagError naming it (was a UnicodeDecodeError)."""
    bag = tmp_path / pristine.name
    shutil.copytree(pristine, bag)
    (bag / 'metadata.yaml').write_bytes(b'\xff\xfe' + (bag / 'metadata.yaml').read_bytes())
    with pytest.raises(KinovaPolicyError, match=r'metadata\.yaml'):
        convert_bag(bag, tmp_path / 'out', OPTS)


def test_mcap_header_length_beyond_the_file_is_a_bag_error(tmp_path: Path) -> None:
    """A header record claiming more than the file is refused before any read of that size."""
    bag = tmp_path / 'bag_mcap'
    syn.write_bag(bag, replace(BAG_SPEC, storage='mcap'))
    storage = bag / 'bag_mcap.mcap'
    data = bytearray(storage.read_bytes())
    data[9:17] = (2**62).to_bytes(8, 'little')  # a 4 EiB header record in a small file
    storage.write_bytes(bytes(data))
    with pytest.raises(KinovaPolicyError, match='bag_mcap'):
        convert_bag(bag, tmp_path / 'out', OPTS)
