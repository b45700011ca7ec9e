"""Tests of kinova_policy_ros.bag.layout: bag formats by content, split recordings, ROS 1 bags."""

from dataclasses import replace
from pathlib import Path
import re
import shlex
import subprocess
import sys
from typing import Any

from kinova_policy_ros.bag.convert import convert_bag, output_stem
from kinova_policy_ros.bag.layout import locate, PartialBagWarning, sniff
from kinova_policy_ros.bag.options import ConvertOptions
from kinova_policy_ros.bag.report import BagReport
from kinova_policy_ros.core.errors import BagError
from kinova_policy_ros.data.schema import load_episode
from kinova_policy_ros.testing import bag_synthetic as syn
import numpy as np
import pytest


def _convert(bag: Path, out: Path, **options: Any) -> tuple[list[Path], BagReport]:
    opts = replace(ConvertOptions(), progress=False, compress=False, **options)
    return convert_bag(bag, out, opts)


def _same_episode(a: Path, b: Path) -> None:
    ea, eb = load_episode(a), load_episode(b)
    np.testing.assert_array_equal(ea.stamp_ns, eb.stamp_ns)
    np.testing.assert_array_equal(ea.rgb, eb.rgb)
    np.testing.assert_array_equal(ea.depth, eb.depth)
    np.testing.assert_array_equal(ea.q, eb.q)


def test_sniff_reads_the_content_not_the_name(tmp_path: Path) -> None:
    cases = {
        'a.mcap': (b'SQLite format 3\x00' + bytes(8), 'sqlite3'),
        'b.db3': (b'\x89MCAP0\r\n\x01', 'mcap'),
        'c.db3': (b'#ROSBAG V2.0\n', 'ros1'),
        'd.bag': (b'\x28\xb5\x2f\xfd' + bytes(4), 'zstd'),
        'e.bag': (b'hello', 'unknown'),
    }
    for name, (data, want) in cases.items():
        (tmp_path / name).write_bytes(data)
        assert sniff(tmp_path / name) == want, name
    assert sniff(tmp_path / 'missing') == 'unknown'


@pytest.mark.parametrize('storage', ['sqlite3', 'mcap'])
def test_rosbag2_directory_named_dot_bag_converts(tmp_path: Path, storage: str) -> None:
    syn.write_bag(tmp_path / 'plain', syn.SynthSpec(n_frames=5, storage=storage))
    truth = syn.write_bag(tmp_path / 'run.bag', syn.SynthSpec(n_frames=5, storage=storage))
    assert locate(tmp_path / 'run.bag').open_path == tmp_path / 'run.bag'
    paths, report = _convert(tmp_path / 'run.bag', tmp_path / 'o')
    assert paths == [tmp_path / 'o' / 'run.bag.npz'] and report['storage'] == storage
    np.testing.assert_array_equal(load_episode(paths[0]).stamp_ns, truth.rgb_stamps)
    _same_episode(paths[0], _convert(tmp_path / 'plain', tmp_path / 'p')[0][0])


@pytest.mark.parametrize('storage', ['sqlite3', 'mcap'])
def test_split_files_without_metadata_read_every_split(tmp_path: Path, storage: str) -> None:
    bag = tmp_path / 'rec'
    truth = syn.write_bag(bag, syn.SynthSpec(n_frames=12, storage=storage, splits=3))
    ext = '.mcap' if storage == 'mcap' else '.db3'
    names = [f'rec_{k}{ext}' for k in range(3)]
    whole, report = _convert(bag, tmp_path / 'whole')
    assert report['storage_files'] == names and report['missing_splits'] == []
    (bag / 'metadata.yaml').unlink()
    for k in range(3):  # any split opens the whole recording, named after it
        assert output_stem(bag / names[k]) == 'rec'
        paths, report = _convert(bag / names[k], tmp_path / f'o{k}')
        assert paths == [tmp_path / f'o{k}' / 'rec.npz']
        assert report['storage_files'] == names and report['missing_splits'] == []
        assert report['frames']['kept'] == len(truth.rgb_stamps) == 12
        _same_episode(paths[0], whole[0])
    paths, _ = _convert(bag, tmp_path / 'dir')  # the directory without metadata.yaml too
    _same_episode(paths[0], whole[0])


def test_missing_split_is_refused_unless_partial_read_is_allowed(tmp_path: Path) -> None:
    bag = tmp_path / 'rec'
    truth = syn.write_bag(bag, syn.SynthSpec(n_frames=12, splits=3))
    (bag / 'metadata.yaml').unlink()
    (bag / 'rec_1.db3').unlink()
    refused = re.escape(
        f"{bag / 'rec_2.db3'}: a split recording without its metadata.yaml: splits present "
        "['rec_0.db3', 'rec_2.db3'], missing ['rec_1.db3']"
    )
    with pytest.raises(BagError, match=refused + '.*--allow-partial-split'):
        _convert(bag / 'rec_2.db3', tmp_path / 'o')
    assert not (tmp_path / 'o').exists()
    with pytest.warns(PartialBagWarning, match=r"missing \['rec_1\.db3'\]; reading \['rec_0"):
        paths, report = _convert(bag / 'rec_2.db3', tmp_path / 'o', allow_partial_split=True)
    assert report['missing_splits'] == ['rec_1.db3']
    assert report['storage_files'] == ['rec_0.db3', 'rec_2.db3']
    kept = load_episode(paths[0]).stamp_ns
    assert 0 < len(kept) < len(truth.rgb_stamps)
    assert set(kept.tolist()) <= set(truth.rgb_stamps.tolist())


def test_lone_later_split_is_refused(tmp_path: Path) -> None:
    bag = tmp_path / 'rec'
    syn.write_bag(bag, syn.SynthSpec(n_frames=9, splits=3))
    lone = tmp_path / 'lone'
    lone.mkdir()
    (bag / 'rec_2.db3').rename(lone / 'rec_2.db3')
    with pytest.raises(BagError, match=r"missing \['rec_0\.db3', 'rec_1\.db3'\]"):
        locate(lone / 'rec_2.db3')
    (bag / 'rec_0.db3').rename(lone / 'solo_0.db3')  # one split of one: read as it is
    assert locate(lone / 'solo_0.db3').files == (lone / 'solo_0.db3',)


def test_metadata_listing_missing_files(tmp_path: Path) -> None:
    bag = tmp_path / 'rec'
    syn.write_bag(bag, syn.SynthSpec(n_frames=12, splits=3, storage='mcap'))
    (bag / 'rec_1.mcap').unlink()
    listed = re.escape(
        "metadata.yaml lists storage files that are not there: missing ['rec_1.mcap'], "
        "present ['rec_0.mcap', 'rec_2.mcap']"
    )
    with pytest.raises(BagError, match=rf'^{re.escape(str(bag))}: {listed}'):
        _convert(bag, tmp_path / 'o')
    with pytest.warns(PartialBagWarning, match=r"missing \['rec_1\.mcap'\]"):
        _, report = _convert(bag, tmp_path / 'o', allow_partial_split=True)
    assert report['missing_splits'] == ['rec_1.mcap']
    assert report['storage_files'] == ['rec_0.mcap', 'rec_2.mcap']


def test_files_that_are_not_rosbag2(tmp_path: Path) -> None:
    syn.write_bag(tmp_path / 'b', syn.SynthSpec(n_frames=3))
    db3 = (tmp_path / 'b' / 'b.db3').read_bytes()
    (tmp_path / 'wrong.mcap').write_bytes(db3)
    with pytest.raises(BagError, match=r'wrong\.mcap: the file holds sqlite3 data but is named '
                       r'\.mcap.*rename it to wrong\.db3'):
        locate(tmp_path / 'wrong.mcap')
    (tmp_path / 'c.db3.zstd').write_bytes(b'\x28\xb5\x2f\xfd' + bytes(10))
    with pytest.raises(BagError, match=r'c\.db3\.zstd: a zstd-compressed storage file'):
        locate(tmp_path / 'c.db3.zstd')
    (tmp_path / 'notes.db3').write_text('not a database')
    with pytest.raises(BagError, match=r'notes\.db3: not a rosbag2 file: its content is'):
        locate(tmp_path / 'notes.db3')
    mixed = tmp_path / 'mixed'
    mixed.mkdir()
    (mixed / 'a.db3').write_bytes(db3)
    (mixed / 'z.db3').write_bytes(db3)
    with pytest.raises(BagError, match=r"storage files of more than one recording: \['a\.db3'\]"):
        locate(mixed)


def test_non_ros_mcap_says_what_it_is(tmp_path: Path) -> None:
    foxglove = syn.write_mcap(
        tmp_path / 'fox.mcap',
        '',
        [('/cam', 'foxglove.RawImage', 'protobuf', b'\x0a\x00', 'protobuf', [b'\x01'])],
    )
    with pytest.raises(BagError, match=r"fox\.mcap: an MCAP file with profile '', not a rosbag2 "
                       r'recording .*channels: /cam \(protobuf messages, protobuf schema '
                       r"'foxglove\.RawImage'\)\. bag_to_npz reads ROS 2 messages only"):
        _convert(foxglove, tmp_path / 'o')
    channel = ('/j', 'J', 'jsonschema', b'{}', 'json', [])
    js = syn.write_mcap(tmp_path / 'js.mcap', 'ros2', [channel])
    with pytest.raises(BagError, match=r'js\.mcap: an MCAP file with profile ros2 but channels '
                       r'that are not ROS 2 CDR messages.*/j \(json messages, jsonschema schema'):
        _convert(js, tmp_path / 'o')
    assert not (tmp_path / 'o').exists()


def test_ros1_bag_is_refused_with_a_command_that_works(tmp_path: Path) -> None:
    src = tmp_path / 'src'
    syn.write_bag(src, syn.SynthSpec(n_frames=6))
    ros1 = tmp_path / 'demo.bag'
    convert_cmd = [sys.executable, '-m', 'rosbags.convert']
    subprocess.run([*convert_cmd, '--src', str(src), '--dst', str(ros1)], check=True)
    assert sniff(ros1) == 'ros1'
    with pytest.raises(BagError, match=r'demo\.bag: a ROS 1 bag \(#ROSBAG V2\.0\), not a '
                       r'rosbag2 recording.*rosbags-convert --src ') as err:
        _convert(ros1, tmp_path / 'o')
    command = re.search(r'rosbags-convert (--src \S+ --dst \S+)', str(err.value))
    assert command is not None
    subprocess.run([*convert_cmd, *shlex.split(command[1])], check=True)
    dst = tmp_path / 'demo_ros2'
    assert (dst / 'metadata.yaml').is_file()
    paths, _ = _convert(dst, tmp_path / 'o')
    _same_episode(paths[0], _convert(src, tmp_path / 'direct')[0][0])
    folder = tmp_path / 'ros1_folder'  # a folder of ROS 1 bags says so too
    folder.mkdir()
    ros1.rename(folder / 'demo.bag')
    with pytest.raises(BagError, match=r'demo\.bag: a ROS 1 bag'):
        locate(folder)
