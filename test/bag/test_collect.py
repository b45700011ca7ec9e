"""
Tests of kinova_policy_ros.bag.collect: the streaming pass (frames, depth matching, stamps).

Unit tests feed :class:`FrameCollector` messages built with the rosbags typestore; the end-to-end
tests convert synthetic bags (kinova_policy_ros.testing.bag_synthetic) to check streaming into
the output file, its fallback when frames are dropped, and the memory guard.
"""

from dataclasses import replace
import json
from pathlib import Path
from typing import Any
import zipfile

from helpers import ls
from kinova_policy_ros.bag.collect import available_memory, FrameCollector
from kinova_policy_ros.bag.convert import convert_bag
from kinova_policy_ros.bag.options import ConvertOptions
from kinova_policy_ros.bag.report import BagReport
from kinova_policy_ros.core import image_codec
from kinova_policy_ros.core.errors import BagError, SchemaError
from kinova_policy_ros.data.preprocess import fit_stream
from kinova_policy_ros.data.schema import load_episode
from kinova_policy_ros.testing import bag_synthetic as syn
import numpy as np
import pytest
from rosbags.typesys import get_typestore, Stores

TS = get_typestore(Stores.ROS2_HUMBLE)
RGB = '/camera/color/image_raw'
DEPTH = '/camera/depth/image_raw'


def _convert(bag: Path, out: Path, **options: Any) -> tuple[list[Path], BagReport]:
    """Convert one bag without a progress bar; ``options`` override ConvertOptions fields."""
    return convert_bag(bag, out, replace(ConvertOptions(), progress=False, **options))


def _rgb(stamp_ns: int, i: int = 0, hw: tuple[int, int] = (48, 64), enc: str = 'rgb8') -> object:
    fields = image_codec.encode_rgb8(syn.rgb_frame(i, *hw))
    if enc != 'rgb8':
        fields = image_codec.ImageFields(hw[0], hw[1], enc, 0, fields.step, fields.data)
    return syn._image_msg(stamp_ns, 'camera', fields)


def _depth(stamp_ns: int, j: int = 0, hw: tuple[int, int] = (48, 64)) -> object:
    fields = image_codec.encode_depth(syn.depth_frame(j, *hw), '16UC1')
    return syn._image_msg(stamp_ns, 'camera', fields)


def _collector(capacity: int = 4, **options: Any) -> FrameCollector:
    return FrameCollector('rec.db3', replace(ConvertOptions(), **options), capacity)


def test_rgb_stamps_must_not_go_back_in_time() -> None:
    col = _collector()
    col.add_rgb(_rgb(100), bag_ns=1)
    with pytest.raises(
        BagError,
        match=rf"rec\.db3: topic '{RGB}': stamps are not monotonic \(100 ns then 50 ns\); "
        r'try --stamp bag',
    ):
        col.add_rgb(_rgb(50), bag_ns=2)


def test_image_size_change_and_overflow_name_bag_and_topic() -> None:
    col = _collector(capacity=2)
    col.add_rgb(_rgb(100), bag_ns=1)
    with pytest.raises(
        BagError,
        match=rf"rec\.db3: topic '{RGB}': image size changed from \(48, 64\) to \(24, 32\) at "
        r'message 1',
    ):
        col.add_rgb(_rgb(200, hw=(24, 32)), bag_ns=2)
    col.add_rgb(_rgb(300), bag_ns=3)
    with pytest.raises(
        BagError, match=rf"rec\.db3: topic '{RGB}': more messages than the bag index says"
    ):
        col.add_rgb(_rgb(400), bag_ns=4)


def test_undecodable_messages_name_topic_and_index() -> None:
    col = _collector()
    col.add_rgb(_rgb(100), bag_ns=1)
    col.add_rgb(_rgb(100), bag_ns=2)  # same stamp: a duplicate, not decoded
    assert col.duplicates == 1 and col.stamps == [100]
    with pytest.raises(
        BagError,
        match=rf"rec\.db3: topic '{RGB}' message 2: unsupported RGB image encoding 'yuv422'",
    ):
        col.add_rgb(_rgb(200, enc='yuv422'), bag_ns=3)  # the third message of the topic
    bad = syn._image_msg(150, 'camera', image_codec.ImageFields(48, 64, 'rgb8', 0, 192, b''))
    with pytest.raises(BagError, match=rf"rec\.db3: topic '{DEPTH}' message 0: "):
        col.add_depth(bad, bag_ns=4)


def test_joint_state_without_an_arm_joint_names_bag_and_topic() -> None:
    col = _collector()
    names = [f'joint_{i}' for i in range(1, 7)]
    msg = TS.types['sensor_msgs/msg/JointState'](
        header=syn._header(5, ''),
        name=names,
        position=np.zeros(6),
        velocity=np.zeros(0),
        effort=np.zeros(0),
    )
    with pytest.raises(
        BagError, match=r"rec\.db3: topic '/joint_states': joint 'joint_7' missing; the message"
    ):
        col.add_joint_state(msg, bag_ns=5)


def test_zero_header_stamp_uses_bag_time_and_is_counted() -> None:
    col = _collector()
    col.add_rgb(_rgb(0), bag_ns=777)
    assert col.stamps == [777] and col.stamp_fallbacks == {'rgb': 1, 'depth': 0, 'joint_states': 0}
    bag_clock = _collector(stamp='bag')
    bag_clock.add_rgb(_rgb(100), bag_ns=900)
    assert bag_clock.stamps == [900] and bag_clock.stamp_fallbacks['rgb'] == 0


def test_depth_nearest_to_each_frame_wins() -> None:
    col = _collector(capacity=3)
    col.add_depth(_depth(90_000_000, j=1), bag_ns=1)  # 10 ms before frame 0
    col.add_rgb(_rgb(100_000_000), bag_ns=2)
    col.add_depth(_depth(104_000_000, j=2), bag_ns=3)  # 4 ms after frame 0: nearer
    col.add_rgb(_rgb(200_000_000, i=1), bag_ns=4)
    col.add_rgb(_rgb(300_000_000, i=2), bag_ns=5)
    col.add_depth(_depth(290_000_000, j=3), bag_ns=6)  # 90 ms after frame 1, 10 ms before 2
    col.settle_pending()
    assert col.depth is not None and col.depth_count == 3
    np.testing.assert_allclose(col.depth_dt, [0.004, 0.090, 0.010], atol=1e-12)
    for i, j in enumerate((2, 3, 3)):
        np.testing.assert_allclose(col.depth[i], syn.depth_frame(j, 48, 64), atol=1e-6)
    assert col.pending == [] and col.candidate == {}
    assert col.end_stream(keep=False) is None  # nothing was streamed


@pytest.mark.parametrize(('depth_offset_s', 'rgb_step_pad'), [(0.004, 3), (-0.004, 3), (0.004, 0)])
def test_streamed_npz_equals_ordinary_write(
    tmp_path: Path, depth_offset_s: float, rgb_step_pad: int
) -> None:
    # --no-compress streams RGB and depth into the file while the bag is read (RGB decoded
    # straight into its slot, depth written from its decoded array); depth after RGB completes
    # a frame at once, depth before it is a candidate kept until a later depth frame proves it
    # nearest
    spec = syn.SynthSpec(rgb_step_pad=rgb_step_pad, depth_offset_s=depth_offset_s, storage='mcap')
    bag = tmp_path / 'b'
    syn.write_bag(bag, spec)
    paths = {}
    for flag, compress in (('--no-compress', False), ('--compress', True)):
        out = tmp_path / flag.strip('-')
        assert _convert(bag, out, compress=compress)[0] == [out / 'b.npz']
        assert ls(out) == ['b.json', 'b.npz']  # no temp file left behind
        paths[flag] = out / 'b.npz'
    with zipfile.ZipFile(paths['--no-compress']) as z:
        assert z.testzip() is None
        assert z.namelist()[:2] == ['rgb.npy', 'depth.npy']  # the streamed members come first
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_STORED}
    with np.load(paths['--no-compress']) as a, np.load(paths['--compress']) as b:
        assert sorted(a.files) == sorted(b.files)
        for key in b.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    ep = load_episode(paths['--no-compress'])
    assert ep.num_frames == spec.n_frames
    for i in range(spec.n_frames):
        np.testing.assert_array_equal(ep.rgb[i], syn.rgb_frame(i, spec.height, spec.width))
        want = syn.depth_frame(i, spec.height, spec.width)
        np.testing.assert_allclose(ep.depth[i], want, atol=1e-6)


def test_streamed_conversion_falls_back_when_frames_are_dropped(tmp_path: Path) -> None:
    spec = syn.SynthSpec(depth_drop=(0, 7))  # frames 0 and 7 have no depth: not every frame kept
    bag = tmp_path / 'd'
    syn.write_bag(bag, spec)
    out = tmp_path / 'out'
    assert _convert(bag, out, compress=False)[0] == [out / 'd.npz']
    assert ls(out) == ['d.json', 'd.npz']  # the stream's temp file was deleted
    with zipfile.ZipFile(out / 'd.npz') as z:
        assert z.testzip() is None and z.namelist()[0] == 'stamp_ns.npy'  # ordinary write
    ep = load_episode(out / 'd.npz')
    keep = [i for i in range(spec.n_frames) if i not in (0, 7)]
    assert ep.num_frames == len(keep)
    for k, i in enumerate(keep):
        np.testing.assert_array_equal(ep.rgb[k], syn.rgb_frame(i, spec.height, spec.width))
        want = syn.depth_frame(i, spec.height, spec.width)
        np.testing.assert_allclose(ep.depth[k], want, atol=1e-6)


def test_write_failure_while_streaming_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kinova_policy_ros.data import npz_writer

    bag = tmp_path / 'full_disk'
    syn.write_bag(bag, syn.SynthSpec(n_frames=12))

    def no_space(fd: int, data: object, offset: int) -> int:
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(npz_writer.os, 'pwrite', no_space)
    pattern = r'full_disk\.npz: cannot write episode: .*No space left on device'
    with pytest.raises(SchemaError, match=pattern):
        _convert(bag, tmp_path / 'out', compress=False)
    assert ls(tmp_path / 'out') == []  # neither the npz, its temp file nor the report


def test_zero_header_stamps_fall_back_to_bag_time(tmp_path: Path) -> None:
    spec = syn.SynthSpec(zero_header_stamps=True, tf='none', n_frames=8)
    truth = syn.write_bag(tmp_path / 'z', spec)
    assert _convert(tmp_path / 'z', tmp_path / 'o')[0] == [tmp_path / 'o' / 'z.npz']
    ep = load_episode(tmp_path / 'o' / 'z.npz')
    np.testing.assert_array_equal(ep.stamp_ns, truth.rgb_stamps + spec.latency_ns)
    report = json.loads((tmp_path / 'o' / 'z.json').read_text())
    assert report['header_stamp_fallbacks'] == {
        'rgb': 8,
        'depth': 8,
        'joint_states': len(truth.joint_stamps),
    }
    assert _convert(tmp_path / 'z', tmp_path / 'b', stamp='bag')[0] == [tmp_path / 'b' / 'z.npz']
    report = json.loads((tmp_path / 'b' / 'z.json').read_text())
    assert report['header_stamp_fallbacks']['rgb'] == 0 and report['stamp_source'] == 'bag'


@pytest.mark.parametrize(
    ('options', 'need_bytes', 'no_compress_hint'),
    [
        ({'compress': True}, 20 * 48 * 64 * 7, True),
        ({'compress': False}, 20 * 48 * 64 * 3, False),  # depth streamed: RGB only
        ({'compress': False, 'split_on_gap_s': 1.0}, 20 * 48 * 64 * 7, False),  # not streamed
    ],
)
def test_episode_larger_than_memory_is_refused(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    options: dict[str, Any],
    need_bytes: int,
    no_compress_hint: bool,
) -> None:
    from kinova_policy_ros.bag import collect as bag_collect

    bag = tmp_path / 'long'
    syn.write_bag(bag, syn.SynthSpec(n_frames=20))  # 48x64 frames
    # the frames held in memory: RGB + depth, or RGB only when depth is streamed to the file
    monkeypatch.setattr(bag_collect, 'available_memory', lambda: need_bytes - 1)
    with pytest.raises(BagError) as refused:
        _convert(bag, tmp_path / 'out', **options)
    err = str(refused.value)
    assert f'long: the episode needs {need_bytes / 1e9:.1f} GB of memory' in err
    assert '(20 frames of 48x64)' in err and '--resize' in err
    assert ('--no-compress (depth' in err) == no_compress_hint
    out = tmp_path / 'out'
    assert not out.exists() or ls(out) == []  # nothing written, no temp file
    monkeypatch.setattr(bag_collect, 'available_memory', lambda: need_bytes)
    assert len(_convert(bag, tmp_path / 'out', **options)[0]) == 1


def test_available_memory_reads_meminfo() -> None:
    have = available_memory()
    if Path('/proc/meminfo').exists():
        assert have is not None and 0 < have < 1 << 50
    else:
        assert have is None


def test_depth_of_another_size_and_aspect_is_fitted_like_the_model_input() -> None:
    # 64x48 colour (4:3) and 48x27 depth (16:9, like the Gen3's 480x270): depth is centre-cropped
    # to 4:3 (a 36x27 box at x=6) and enlarged by nearest neighbour to the colour size.
    col = _collector(capacity=2)
    col.add_rgb(_rgb(100_000_000), bag_ns=1)
    depth = syn.depth_frame(4, 27, 48)
    col.add_depth(_depth(100_000_000, j=4, hw=(27, 48)), bag_ns=2)
    col.settle_pending()
    assert col.depth is not None and col.depth_native_hw == (27, 48)
    want = fit_stream(depth, (48, 64), 'depth', resample='area_nearest')
    np.testing.assert_allclose(col.depth[0], want, atol=1e-3)  # (16UC1: millimetres)
    np.testing.assert_allclose(col.depth[0][:, 0], depth[np.arange(48) * 27 // 48, 6], atol=1e-3)
    # with --resize, colour of another aspect is centre-cropped too: the same as the model path
    resized = _collector(capacity=1, resize=(24, 24))
    resized.add_rgb(_rgb(100_000_000), bag_ns=1)
    assert resized.rgb is not None
    want_rgb = fit_stream(syn.rgb_frame(0, 48, 64), (24, 24), 'rgb', resample='area_nearest')
    np.testing.assert_array_equal(resized.rgb[0], want_rgb)
    by_hand = np.ascontiguousarray(syn.rgb_frame(0, 48, 64)[:, 8:56])  # the centred 48x48 box
    np.testing.assert_array_equal(
        want_rgb, fit_stream(by_hand, (24, 24), 'rgb', resample='area_nearest')
    )
