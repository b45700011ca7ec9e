"""The one preprocessing path (dataset, converter and runner) and the joint normalizer."""

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from kinova_policy_ros.core.errors import CheckpointError, ConfigError
from kinova_policy_ros.data.preprocess import (
    crop_box,
    describe_fit,
    fit_stream,
    frames_to_tensors,
    JointNormalizer,
    JointStats,
    preprocess_frames,
    resize_frames,
    stream_box,
    StreamGeometry,
)
import numpy as np
import pytest
import torch


def test_preprocess_shapes_ranges_and_depth_clip():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (3, 40, 60, 3), dtype=np.uint8)
    depth = rng.uniform(0, 5, (3, 40, 60)).astype(np.float32)
    r, d = preprocess_frames(rgb, depth, (20, 30), max_depth_m=2.0, normalize_depth01=True)
    assert r.shape == (3, 3, 20, 30) and r.dtype == torch.float32
    assert d.shape == (3, 1, 20, 30) and d.dtype == torch.float32
    assert float(r.min()) >= 0.0 and float(r.max()) <= 1.0
    assert float(d.min()) >= 0.0 and float(d.max()) <= 1.0
    _, d_m = preprocess_frames(rgb, depth, (20, 30), max_depth_m=2.0, normalize_depth01=False)
    assert float(d_m.max()) > 2.0  # metres, not clipped


def test_same_size_keeps_pixels_and_channel_order():
    rgb = np.zeros((1, 4, 5, 3), np.uint8)
    rgb[0, 1, 2] = (10, 20, 30)
    depth = np.full((1, 4, 5), 1.0, np.float32)
    r, d = preprocess_frames(rgb, depth, (4, 5), max_depth_m=2.0, normalize_depth01=True)
    np.testing.assert_allclose(r[0, :, 1, 2].numpy(), np.array([10, 20, 30]) / 255.0)
    np.testing.assert_allclose(d.numpy(), 0.5)


def test_crop_keeps_the_fraction_of_the_image_at_any_resolution():
    assert crop_box((96, 128), (0.375, 0.297, 0.5, 0.5)) == (36, 38, 48, 64)
    assert crop_box((480, 640), (0.375, 0.297, 0.5, 0.5)) == (180, 190, 240, 320)
    assert crop_box((4, 4), (0.9, 0.9, 0.1, 0.1)) == (3, 3, 1, 1)  # at least one pixel, inside
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (2, 40, 60, 3), dtype=np.uint8)
    depth = rng.uniform(0, 3, (2, 40, 60)).astype(np.float32)
    crop = (0.25, 0.5, 0.5, 0.25)  # rows 10..30, columns 30..45
    r, d = resize_frames(rgb, depth, (10, 15), crop)
    r_ref, d_ref = resize_frames(rgb[:, 10:30, 30:45], depth[:, 10:30, 30:45], (10, 15))
    np.testing.assert_array_equal(r, r_ref)
    np.testing.assert_array_equal(d, d_ref)
    same, _ = resize_frames(rgb, depth, (20, 15), crop)  # crop of the model size: pixels as-is
    np.testing.assert_array_equal(same, rgb[:, 10:30, 30:45].transpose(0, 3, 1, 2))
    full, _ = preprocess_frames(rgb, depth, (10, 15), 2.0, True)
    cropped, _ = preprocess_frames(rgb, depth, (10, 15), 2.0, True, crop)
    assert not torch.equal(full, cropped)


def test_two_stages_equal_one_call_and_batch_equals_single():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (5, 48, 64, 3), dtype=np.uint8)
    depth = rng.uniform(0, 3, (5, 48, 64)).astype(np.float32)
    full = preprocess_frames(rgb, depth, (24, 32), 2.0, True)
    staged = frames_to_tensors(*resize_frames(rgb, depth, (24, 32)), 2.0, True)
    single = preprocess_frames(rgb[2:3], depth[2:3], (24, 32), 2.0, True)
    for a, b in zip(full, staged):
        assert torch.equal(a, b)
    for a, b in zip(full, single):
        assert torch.equal(a[2:3], b)


def test_resize_rejects_bad_input_with_names():
    with pytest.raises(ValueError, match='rgb: expected uint8'):
        resize_frames(np.zeros((1, 4, 4, 3), np.float32), np.zeros((1, 4, 4), np.float32), (2, 2))
    # Depth of another size than colour is fine (each stream is fitted on its own); another
    # frame count or a colour-shaped depth array is not.
    with pytest.raises(ValueError, match='depth: expected'):
        resize_frames(np.zeros((1, 4, 4, 3), np.uint8), np.zeros((2, 4, 5), np.float32), (2, 2))
    with pytest.raises(ValueError, match='depth: expected'):
        resize_frames(np.zeros((1, 4, 4, 3), np.uint8), np.zeros((1, 4, 4, 3), np.float32), (2, 2))
    r, d = resize_frames(np.zeros((1, 4, 4, 3), np.uint8), np.zeros((1, 4, 5), np.float32), (2, 2))
    assert r.shape == (1, 3, 2, 2) and d.shape == (1, 1, 2, 2)


# --- fit_stream: each stream from its own size to the model input ------------------------


@pytest.mark.parametrize(
    ('image_hw', 'box'),
    [
        ((720, 1280), (0, 160, 720, 960)),  # Gen3 vision module colour, 16:9
        ((270, 480), (0, 60, 270, 360)),  # Gen3 vision module depth, 16:9
        ((480, 640), (0, 0, 480, 640)),  # 4:3 already: the whole image
        ((240, 424), (0, 52, 240, 320)),  # RealSense depth 424x240
        ((800, 600), (175, 0, 450, 600)),  # portrait: rows are cropped, centred
    ],
)
def test_stream_box_is_the_centred_box_of_the_model_aspect(image_hw, box):
    assert stream_box(image_hw, (96, 128)) == box
    assert stream_box(image_hw, (96, 128), fit='stretch') == (0, 0, *image_hw)


def test_stream_box_applies_the_fractional_crop_first():
    # crop rows 0..360, columns 320..960 of 720x1280 (a 640x360 box, 16:9): then 4:3 inside it
    assert stream_box((720, 1280), (96, 128), (0.0, 0.25, 0.5, 0.5)) == (0, 400, 360, 480)
    # the same fractions of the 480x270 depth stream give the same part of the field of view
    assert stream_box((270, 480), (96, 128), (0.0, 0.25, 0.5, 0.5)) == (0, 150, 135, 180)
    with pytest.raises(ConfigError, match=r"data\.fit: must be one of .*'squash'"):
        stream_box((4, 4), (2, 2), fit='squash')


@given(
    h=st.integers(1, 2000),
    w=st.integers(1, 2000),
    oh=st.integers(1, 500),
    ow=st.integers(1, 500),
)
def test_stream_box_is_inside_centred_and_of_the_model_aspect(h, w, oh, ow):
    y, x, bh, bw = stream_box((h, w), (oh, ow))
    assert 0 <= y and 0 <= x and 1 <= bh and 1 <= bw and y + bh <= h and x + bw <= w
    assert bh == h or bw == w  # the largest such box: it spans one whole side
    assert abs((h - bh) - 2 * y) <= 1 and abs((w - bw) - 2 * x) <= 1  # centred
    # its aspect is the model's up to the rounding of one side to whole pixels
    if bw == w and bh < h:
        assert abs(bh - max(1.0, w * oh / ow)) <= 0.5  # (at least one pixel)
    if bh == h and bw < w:
        assert abs(bw - max(1.0, h * ow / oh)) <= 0.5


def test_fit_stream_is_the_identity_when_sizes_already_match():
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, (2, 24, 32, 3), dtype=np.uint8)
    depth = rng.uniform(0, 3, (24, 32)).astype(np.float32)
    for resample in ('antialias', 'area_nearest'):
        out = fit_stream(rgb, (24, 32), 'rgb', resample=resample)
        np.testing.assert_array_equal(out, rgb)
        assert out is not rgb and out.flags.c_contiguous
        same = fit_stream(depth, (24, 32), 'depth', resample=resample)
        np.testing.assert_array_equal(same, depth)
    np.testing.assert_array_equal(
        fit_stream(rgb, (24, 32), 'rgb', channels_first=True), rgb.transpose(0, 3, 1, 2)
    )
    np.testing.assert_array_equal(
        fit_stream(depth, (24, 32), 'depth', channels_first=True), depth[None]
    )


def test_fit_stream_crops_then_resizes_each_stream_at_its_own_size():
    # 1280x720 colour and 480x270 depth of the same scene: a vertical edge at 3/8 of the width
    # (inside the 4:3 centre box) must land at the same model column in both.
    rgb = np.zeros((720, 1280, 3), np.uint8)
    rgb[:, 480:] = 255
    depth = np.full((270, 480), 1.0, np.float32)
    depth[:, 180:] = 2.0
    r = fit_stream(rgb, (96, 128), 'rgb')
    d = fit_stream(depth, (96, 128), 'depth')
    assert r.shape == (96, 128, 3) and r.dtype == np.uint8
    assert d.shape == (96, 128) and d.dtype == np.float32
    # the edge at x = 480 of 1280 is x = 320 of the 960-wide box: column 320 * 128 / 960 = 42.67
    col_r = int(np.argmax(r[48, :, 0] > 127))
    col_d = int(np.argmax(d[48] > 1.5))
    assert col_r == col_d == 43
    # the same as cropping by hand, then resizing a frame of the model's aspect
    by_hand = fit_stream(np.ascontiguousarray(rgb[:, 160:1120]), (96, 128), 'rgb')
    np.testing.assert_array_equal(r, by_hand)
    # stretch keeps the whole width: the edge moves to 480 * 128 / 1280 = 48
    s = fit_stream(rgb, (96, 128), 'rgb', fit='stretch')
    assert int(np.argmax(s[48, :, 0] > 127)) == 48


def test_area_nearest_keeps_depth_values_and_averages_colour():
    depth = np.zeros((270, 480), np.float32)
    depth[:, 1::2] = 3.0  # alternating columns: any averaging would invent 1.5 m
    d = fit_stream(depth, (96, 128), 'depth', resample='area_nearest')
    assert set(np.unique(d).tolist()) <= {0.0, 3.0}
    up = fit_stream(depth, (720, 1280), 'depth', resample='area_nearest')
    assert up.shape == (720, 1280) and set(np.unique(up).tolist()) <= {0.0, 3.0}
    rgb = np.zeros((768, 1024, 3), np.uint8)
    rgb[:, 1::2] = 200
    r = fit_stream(rgb, (96, 128), 'rgb', resample='area_nearest')
    assert np.all(r == 100)  # area: the mean of the 8x8 pixels of each output pixel
    batch = fit_stream(np.stack([depth, depth]), (96, 128), 'depth', resample='area_nearest')
    np.testing.assert_array_equal(batch[1], d)


def test_fit_stream_errors_name_the_stream():
    with pytest.raises(ValueError, match=r'rgb: expected uint8 \[N,H,W,3\].*float32'):
        fit_stream(np.zeros((4, 4, 3), np.float32), (2, 2), 'rgb')
    with pytest.raises(ValueError, match=r'rgb: expected uint8.*\[4, 4\]'):
        fit_stream(np.zeros((4, 4), np.uint8), (2, 2), 'rgb')
    with pytest.raises(ValueError, match=r'depth: expected float metres.*uint16'):
        fit_stream(np.zeros((4, 4), np.uint16), (2, 2), 'depth')
    with pytest.raises(ValueError, match=r'depth: expected float metres.*\[1, 4, 4, 3\]'):
        fit_stream(np.zeros((1, 4, 4, 3), np.float32), (2, 2), 'depth')
    with pytest.raises(ValueError, match=r"depth: resample must be one of .*'cubic'"):
        bad: Any = 'cubic'
        fit_stream(np.zeros((4, 4), np.float32), (2, 2), 'depth', resample=bad)
    with pytest.raises(ValueError, match=r'rgb: output size must be positive, got \[0, 2\]'):
        fit_stream(np.zeros((4, 4, 3), np.uint8), (0, 2), 'rgb')
    bad = 'ir'
    with pytest.raises(ValueError, match="stream: expected 'rgb' or 'depth', got 'ir'"):
        fit_stream(np.zeros((4, 4), np.float32), (2, 2), bad)


def test_preprocess_accepts_colour_and_depth_of_different_sizes():
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, (1, 720, 1280, 3), dtype=np.uint8)
    depth = rng.uniform(0.2, 3.0, (1, 270, 480)).astype(np.float32)
    r, d = preprocess_frames(rgb, depth, (96, 128), 2.0, True)
    assert r.shape == (1, 3, 96, 128) and d.shape == (1, 1, 96, 128)
    ref = fit_stream(depth[0], (96, 128), 'depth')
    np.testing.assert_allclose(d[0, 0].numpy(), np.clip(ref, 0, 2.0) / 2.0, rtol=1e-6)


def test_describe_fit_says_what_happens_to_a_stream():
    text = describe_fit((720, 1280), (96, 128))
    assert text == '1280x720 -> box 960x720 at x=160 y=0 -> 128x96'


# --- StreamGeometry: what the checkpoint records -------------------------------------------


def _geometry() -> StreamGeometry:
    return StreamGeometry(((480, 640),), ((480, 640),), (96, 128), None, 'center_crop')


def test_geometry_round_trips_and_rejects_bad_fields():
    g = StreamGeometry(((720, 1280),), ((270, 480),), (96, 128), (0.0, 0.1, 0.9, 0.8), 'stretch')
    assert StreamGeometry.from_dict(g.to_dict()) == g
    d = g.to_dict()
    del d['depth_hw']
    with pytest.raises(CheckpointError, match="ckpt: missing field 'depth_hw'"):
        StreamGeometry.from_dict(d, 'ckpt')
    with pytest.raises(CheckpointError, match=r'geometry\.rgb_hw\[0\]: expected \[height, wid'):
        StreamGeometry.from_dict({**g.to_dict(), 'rgb_hw': [[720, -1]]})
    with pytest.raises(CheckpointError, match=r"geometry\.fit: must be one of .*'zoom'"):
        StreamGeometry.from_dict({**g.to_dict(), 'fit': 'zoom'})


def test_geometry_mismatch_names_the_stream_its_size_and_aspect():
    g = _geometry()
    assert g.mismatch((480, 640), (480, 640)) == ''
    text = g.mismatch((720, 1280), (270, 480))
    assert 'rgb stream is 1280x720 (aspect 1.78), trained on 640x480 (aspect 1.33)' in text
    assert 'depth stream is 480x270 (aspect 1.78)' in text
    assert 'size and aspect ratio differ' in text and 'centre-cropped' in text
    text = g.mismatch((240, 320), (480, 640))  # same aspect, another size
    assert text.startswith('rgb stream is 320x240') and 'size differ' in text
    assert 'depth' not in text.split('(each')[0]
    unknown = StreamGeometry((), (), (96, 128), None, 'center_crop')
    assert unknown.mismatch((720, 1280), (270, 480)) == ''  # nothing recorded: nothing to say


def test_normalizer_maps_range_to_unit_interval_and_back():
    lo = np.array([-1.0, 0.0, 2.0])
    hi = np.array([1.0, 4.0, 2.0])  # the last joint is constant
    n = JointNormalizer(lo, hi)
    x = np.array([[-1.0, 0.0, 2.0], [1.0, 4.0, 2.0], [0.0, 2.0, 2.0]])
    y = n.normalize(x)
    np.testing.assert_allclose(y, [[-1, -1, 0], [1, 1, 0], [0, 0, 0]], atol=1e-7)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(n.denormalize(y), x, atol=1e-6)


def test_stats_round_trip_and_missing_stat_is_an_error():
    s = JointStats.from_arrays(np.arange(14.0).reshape(2, 7), -np.ones((2, 7)))
    assert JointStats.from_dict(s.to_dict()).to_dict() == s.to_dict()
    d = s.to_dict()
    del d['dq_max']
    with pytest.raises(CheckpointError, match="missing normalization stat 'dq_max'"):
        JointStats.from_dict(d, 'ckpt/config.json: stats')
