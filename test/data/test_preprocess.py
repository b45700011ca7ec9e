"""The one preprocessing path (dataset and runner) and the joint normalizer."""

from kinova_policy_ros.core.errors import CheckpointError
from kinova_policy_ros.data.preprocess import (
    crop_box,
    frames_to_tensors,
    JointNormalizer,
    JointStats,
    preprocess_frames,
    resize_frames,
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
    with pytest.raises(ValueError, match='depth: expected'):
        resize_frames(np.zeros((1, 4, 4, 3), np.uint8), np.zeros((1, 4, 5), np.float32), (2, 2))


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
