"""Tests of kinova_policy_ros.core.image_codec: round trips, padding, channel order, errors."""

from dataclasses import replace
import struct
from types import SimpleNamespace
from typing import Any

import cv2
from kinova_policy_ros.core import image_codec as ic
from kinova_policy_ros.core.errors import DecodeError
import numpy as np
import pytest
from rosbags.typesys import get_typestore, Stores

TS = get_typestore(Stores.ROS2_HUMBLE)
H, W = 6, 5


def _rgb(h: int = H, w: int = W, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _smooth_rgb(h: int = 48, w: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 4, y * 5, (x + y) * 2], axis=-1).astype(np.uint8)


def _depth(h: int = H, w: int = W) -> np.ndarray:
    d = np.random.default_rng(1).uniform(0.2, 3.0, (h, w))
    return (np.rint(d * 1000.0) / 1000.0).astype(np.float32)


def _raw(enc: str, pixels: np.ndarray, step_pad: int = 0, bigendian: int = 0) -> SimpleNamespace:
    """Build an Image-like object by hand (independent of the encoder under test)."""
    h, w = pixels.shape[:2]
    per_row = pixels.reshape(h, -1).view(np.uint8).reshape(h, -1)
    rows = np.concatenate([per_row, np.full((h, step_pad), 0xAB, np.uint8)], axis=1)
    return SimpleNamespace(
        height=h,
        width=w,
        encoding=enc,
        is_bigendian=bigendian,
        step=rows.shape[1],
        data=rows.tobytes(),
    )


def _rosbags_image(fields: Any) -> Any:
    """Serialize through rosbags and deserialize back: a real rosbags message."""
    stamp = TS.types['builtin_interfaces/msg/Time'](sec=1, nanosec=2)
    header = TS.types['std_msgs/msg/Header'](stamp=stamp, frame_id='camera')
    msg = TS.types['sensor_msgs/msg/Image'](
        header=header,
        height=fields.height,
        width=fields.width,
        encoding=fields.encoding,
        is_bigendian=fields.is_bigendian,
        step=fields.step,
        data=np.frombuffer(fields.data, np.uint8),
    )
    raw = TS.serialize_cdr(msg, 'sensor_msgs/msg/Image')
    return TS.deserialize_cdr(raw, 'sensor_msgs/msg/Image')


def _rosbags_compressed(fmt: str, data: bytes) -> Any:
    stamp = TS.types['builtin_interfaces/msg/Time'](sec=1, nanosec=2)
    header = TS.types['std_msgs/msg/Header'](stamp=stamp, frame_id='camera')
    msg = TS.types['sensor_msgs/msg/CompressedImage'](
        header=header, format=fmt, data=np.frombuffer(data, np.uint8)
    )
    raw = TS.serialize_cdr(msg, 'sensor_msgs/msg/CompressedImage')
    return TS.deserialize_cdr(raw, 'sensor_msgs/msg/CompressedImage')


# ----------------------------------------------------------------------------- raw colour


@pytest.mark.parametrize('pad', [0, 3])
def test_decode_rgb8_and_bgr8_channel_order(pad: int) -> None:
    rgb = _rgb()
    np.testing.assert_array_equal(ic.decode_rgb(_raw('rgb8', rgb, pad)), rgb)
    np.testing.assert_array_equal(ic.decode_rgb(_raw('bgr8', rgb[..., ::-1].copy(), pad)), rgb)


@pytest.mark.parametrize('pad', [0, 2])
def test_decode_rgba_bgra_drop_alpha(pad: int) -> None:
    rgb = _rgb()
    alpha = np.full((H, W, 1), 7, np.uint8)
    rgba = np.concatenate([rgb, alpha], axis=2)
    bgra = np.concatenate([rgb[..., ::-1], alpha], axis=2)
    np.testing.assert_array_equal(ic.decode_rgb(_raw('rgba8', rgba, pad)), rgb)
    np.testing.assert_array_equal(ic.decode_rgb(_raw('bgra8', bgra, pad)), rgb)


def test_decode_mono8_replicated() -> None:
    mono = _rgb()[..., 0].copy()
    out = ic.decode_rgb(_raw('mono8', mono, step_pad=1))
    assert out.shape == (H, W, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], mono)


def test_decode_rgb_is_writable_copy() -> None:
    rgb = _rgb()
    msg = _raw('rgb8', rgb)
    out = ic.decode_rgb(msg)
    assert out.flags.writeable and out.flags.owndata and out.flags.c_contiguous
    out[...] = 0
    np.testing.assert_array_equal(ic.decode_rgb(msg), rgb)


def test_decode_rgb_accepts_unpadded_last_row() -> None:
    rgb = _rgb()
    msg = _raw('rgb8', rgb, step_pad=4)
    msg.data = msg.data[:-4]
    np.testing.assert_array_equal(ic.decode_rgb(msg), rgb)


def test_decode_rgb_errors() -> None:
    msg = _raw('rgb8', _rgb())
    msg.data = msg.data[:-5]
    with pytest.raises(DecodeError, match=r"'rgb8'.*85 bytes, expected 90"):
        ic.decode_rgb(msg)
    with pytest.raises(DecodeError, match=r"unsupported RGB image encoding 'yuv422'.*6x5"):
        ic.decode_rgb(_raw('yuv422', _rgb()))
    bad_step = _raw('rgb8', _rgb())
    bad_step.step = 10
    with pytest.raises(DecodeError, match='step 10 is smaller than width 5'):
        ic.decode_rgb(bad_step)
    empty = _raw('rgb8', _rgb())
    empty.height = 0
    with pytest.raises(DecodeError, match='empty image'):
        ic.decode_rgb(empty)


def test_encode_rgb8_round_trip() -> None:
    rgb = _rgb(7, 9)
    f = ic.encode_rgb8(rgb)
    assert (f.height, f.width, f.encoding, f.step, f.is_bigendian) == (7, 9, 'rgb8', 27, 0)
    assert isinstance(f.data, bytes)
    np.testing.assert_array_equal(ic.decode_rgb(f), rgb)
    with pytest.raises(DecodeError, match='uint8'):
        ic.encode_rgb8(rgb.astype(np.float32))
    with pytest.raises(Exception, match='cannot assign'):
        f.height = 3  # type: ignore[misc]


# ----------------------------------------------------------------------------- raw depth


@pytest.mark.parametrize('bigendian', [0, 1])
@pytest.mark.parametrize('pad', [0, 2])
def test_decode_16uc1_mm_to_m(bigendian: int, pad: int) -> None:
    mm = np.array([[0, 1, 1500], [65535, 250, 3]], np.uint16)
    pixels = mm.astype('>u2' if bigendian else '<u2')
    out = ic.decode_depth(_raw('16UC1', pixels, pad, bigendian))
    assert out.dtype == np.float32 and out.shape == (2, 3)
    np.testing.assert_allclose(out, mm / 1000.0, rtol=1e-6)
    assert out[0, 0] == 0.0


@pytest.mark.parametrize('bigendian', [0, 1])
def test_decode_32fc1_invalid_to_zero(bigendian: int) -> None:
    d = np.array([[1.25, np.nan, np.inf], [-0.5, 0.0, 2.5]], np.float32)
    out = ic.decode_depth(_raw('32FC1', d.astype('>f4' if bigendian else '<f4'), 4, bigendian))
    np.testing.assert_array_equal(out, [[1.25, 0, 0], [0, 0, 2.5]])
    assert np.isfinite(out).all() and out.flags.writeable


@pytest.mark.parametrize('encoding', ['rgb8', 'bgra8', 'mono8', '16UC1', '32FC1'])
def test_decode_into_a_given_array(encoding: str) -> None:
    # the converter decodes straight into slots of its frame buffer: same values, same array
    depth = encoding in ('16UC1', '32FC1')
    if depth:
        mm = np.array([[0, 1, 1500], [65535, 250, 3]], np.uint16)
        pixels = mm if encoding == '16UC1' else (mm / 1000.0).astype(np.float32)
        msg, decode = _raw(encoding, pixels, 2), ic.decode_depth
        slot = np.full((4, 2, 3), -1.0, np.float32)
    else:
        rgb = _rgb()
        pixels = {'rgb8': rgb, 'bgra8': np.dstack([rgb[..., ::-1], rgb[..., :1]])}.get(
            encoding, rgb[..., 0]
        )
        msg, decode = _raw(encoding, pixels, 3), ic.decode_rgb
        slot = np.zeros((4, *rgb.shape), np.uint8)
    want = decode(msg)
    got = decode(msg, out=slot[1])
    assert np.shares_memory(got, slot)
    np.testing.assert_array_equal(slot[1], want)
    np.testing.assert_array_equal(slot[0], slot[2])  # neighbours untouched
    with pytest.raises(DecodeError, match=f'{encoding}.*cannot be decoded into'):
        decode(msg, out=slot[1][:1])
    wrong_dtype = np.zeros(slot.shape[1:], np.float64 if not depth else np.uint16)
    with pytest.raises(DecodeError, match='cannot be decoded into'):
        decode(msg, out=wrong_dtype)


def test_encode_depth_round_trips_and_clipping() -> None:
    d = _depth()
    np.testing.assert_allclose(ic.decode_depth(ic.encode_depth(d)), d, atol=1e-6)
    np.testing.assert_array_equal(ic.decode_depth(ic.encode_depth(d, '32FC1')), d)
    f = ic.encode_depth(np.array([[0.0004, 0.0006, 70.0, np.nan, -1.0]]))
    np.testing.assert_array_equal(np.frombuffer(f.data, '<u2'), [0, 1, 65535, 0, 0])
    with pytest.raises(DecodeError, match="unsupported encoding 'mono8'"):
        ic.encode_depth(d, 'mono8')


def test_decode_depth_errors() -> None:
    with pytest.raises(DecodeError, match=r"unsupported depth image encoding 'rgb8'"):
        ic.decode_depth(_raw('rgb8', _rgb()))
    f = ic.encode_depth(_depth())
    with pytest.raises(DecodeError, match=r"'16UC1'.*58 bytes, expected 60"):
        ic.decode_depth(replace(f, data=f.data[:-2]))


# ----------------------------------------------------------------------------- compressed


def test_compressed_png_rgb_exact_and_jpeg_close() -> None:
    rgb = _smooth_rgb()
    fmt, data = ic.encode_compressed_rgb(rgb, 'png')
    assert fmt == 'rgb8; png compressed bgr8'
    np.testing.assert_array_equal(
        ic.decode_compressed_rgb(SimpleNamespace(format=fmt, data=data)), rgb
    )
    fmt, data = ic.encode_compressed_rgb(rgb, 'jpeg')
    assert fmt == 'rgb8; jpeg compressed bgr8' and data[:2] == b'\xff\xd8'
    out = ic.decode_compressed_rgb(SimpleNamespace(format=fmt, data=data))
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - rgb).mean() < 3.0


@pytest.mark.parametrize('fmt', ['jpeg', 'png', 'bgr8; jpeg compressed bgr8'])
def test_compressed_rgb_channel_order_from_opencv_payload(fmt: str) -> None:
    # A pure red image written by OpenCV (BGR in memory) must decode as red in RGB.
    bgr = np.zeros((16, 16, 3), np.uint8)
    bgr[..., 2] = 255
    ok, buf = cv2.imencode('.png' if 'png' in fmt else '.jpg', bgr)
    assert ok
    out = ic.decode_compressed_rgb(SimpleNamespace(format=fmt, data=buf.tobytes()))
    assert out[..., 0].min() > 240 and out[..., 1:].max() < 15


def test_compressed_mono_png_replicated() -> None:
    mono = _smooth_rgb()[..., 0].copy()
    ok, buf = cv2.imencode('.png', mono)
    assert ok
    out = ic.decode_compressed_rgb(SimpleNamespace(format='mono8; png compressed ', data=buf))
    np.testing.assert_array_equal(out, np.repeat(mono[..., None], 3, axis=2))


def test_compressed_rgb_errors() -> None:
    with pytest.raises(DecodeError, match=r"format 'jpeg'.*cannot decode 10 bytes"):
        ic.decode_compressed_rgb(SimpleNamespace(format='jpeg', data=b'0123456789'))
    with pytest.raises(DecodeError, match=r"format 'png'.*empty payload"):
        ic.decode_compressed_rgb(SimpleNamespace(format='png', data=b''))
    with pytest.raises(DecodeError, match="unsupported format 'rgb8; tiff'"):
        ic.decode_compressed_rgb(SimpleNamespace(format='rgb8; tiff', data=b'xx'))
    with pytest.raises(DecodeError, match='compressedDepth'):
        ic.decode_compressed_rgb(SimpleNamespace(format='16UC1; compressedDepth', data=b'xx'))
    with pytest.raises(DecodeError, match="unsupported format 'gif'"):
        ic.encode_compressed_rgb(_rgb(), 'gif')


def test_compressed_depth_16uc1_round_trip() -> None:
    d = _depth(12, 10)
    d[0, 0] = 0.0
    fmt, data = ic.encode_compressed_depth(d)
    assert fmt == '16UC1; compressedDepth png'
    assert struct.unpack('<iff', data[:12]) == (0, 0.0, 0.0) and data[12:16] == b'\x89PNG'
    out = ic.decode_compressed_depth(SimpleNamespace(format=fmt, data=data))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, d, atol=1e-6)
    # Humble's format string has no trailing codec name; a bare png (no header) also decodes.
    old = ic.decode_compressed_depth(SimpleNamespace(format='16UC1; compressedDepth', data=data))
    np.testing.assert_array_equal(old, out)
    bare_msg = SimpleNamespace(format='16UC1; compressedDepth', data=data[12:])
    bare = ic.decode_compressed_depth(bare_msg)
    np.testing.assert_array_equal(bare, out)


def test_compressed_depth_32fc1_inverse_depth() -> None:
    # Quantize as compressed_depth_image_transport does (depth_quantization 100, max depth 10).
    z0, zmax = 100.0, 10.0
    qa = np.float32(z0 * (z0 + 1.0))
    qb = np.float32(1.0 - qa / zmax)
    d = np.array([[0.5, 1.0, 2.0], [4.0, 11.0, 0.75]], np.float32)
    inv = np.where(d < zmax, qa / d + qb, 0).astype(np.uint16)
    ok, buf = cv2.imencode('.png', inv)
    assert ok
    payload = struct.pack('<iff', 0, qa, qb) + buf.tobytes()
    msg = SimpleNamespace(format='32FC1; compressedDepth png', data=payload)
    out = ic.decode_compressed_depth(msg)
    expected = np.where(inv > 0, qa / (inv.astype(np.float64) - qb), 0.0)
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    np.testing.assert_allclose(out[d < zmax], d[d < zmax], rtol=2e-3)
    assert out[1, 1] == 0.0


def test_compressed_depth_errors() -> None:
    with pytest.raises(DecodeError, match='RVL'):
        ic.decode_compressed_depth(SimpleNamespace(format='16UC1; compressedDepth rvl', data=b''))
    with pytest.raises(DecodeError, match='shorter than the 12-byte header'):
        ic.decode_compressed_depth(SimpleNamespace(format='16UC1; compressedDepth', data=b'abc'))
    _, buf = cv2.imencode('.png', _smooth_rgb())
    with pytest.raises(DecodeError, match='single-channel 16-bit png'):
        ic.decode_compressed_depth(
            SimpleNamespace(format='16UC1; compressedDepth', data=bytes(12) + buf.tobytes())
        )
    _, data = ic.encode_compressed_depth(_depth())
    with pytest.raises(DecodeError, match='without inverse-depth parameters'):
        ic.decode_compressed_depth(SimpleNamespace(format='32FC1; compressedDepth', data=data))
    with pytest.raises(DecodeError, match="unsupported source encoding '8UC1'"):
        ic.decode_compressed_depth(SimpleNamespace(format='8UC1; compressedDepth', data=data))


# ----------------------------------------------------------------------------- message types


def test_rosbags_messages_decode() -> None:
    rgb = _rgb()
    msg = _rosbags_image(ic.encode_rgb8(rgb))
    assert isinstance(msg.data, np.ndarray)
    np.testing.assert_array_equal(ic.decode_rgb_message(msg), rgb)
    d = _depth()
    dmsg = _rosbags_image(ic.encode_depth(d))
    np.testing.assert_allclose(ic.decode_depth_message(dmsg), d, atol=1e-6)
    cmsg = _rosbags_compressed(*ic.encode_compressed_rgb(rgb, 'png'))
    assert ic.is_compressed(cmsg)
    np.testing.assert_array_equal(ic.decode_rgb_message(cmsg), rgb)
    cdmsg = _rosbags_compressed(*ic.encode_compressed_depth(d))
    np.testing.assert_allclose(ic.decode_depth_message(cdmsg), d, atol=1e-6)


def test_rclpy_messages_decode() -> None:
    msgs = pytest.importorskip('sensor_msgs.msg')
    rgb = _rgb()
    img = ic.fill_image_msg(msgs.Image(), ic.encode_rgb8(rgb))
    np.testing.assert_array_equal(ic.decode_rgb(img), rgb)
    np.testing.assert_array_equal(ic.decode_rgb_message(img), rgb)
    bgr = msgs.Image(height=H, width=W, encoding='bgr8', step=W * 3 + 1)
    bgr.data = _raw('bgr8', rgb[..., ::-1].copy(), step_pad=1).data
    np.testing.assert_array_equal(ic.decode_rgb(bgr), rgb)
    d = _depth()
    dimg = ic.fill_image_msg(msgs.Image(), ic.encode_depth(d))
    np.testing.assert_allclose(ic.decode_depth_message(dimg), d, atol=1e-6)
    fmt, data = ic.encode_compressed_rgb(rgb, 'png')
    cimg = msgs.CompressedImage(format=fmt)
    cimg.data = data
    np.testing.assert_array_equal(ic.decode_rgb_message(cimg), rgb)
    fmt, data = ic.encode_compressed_depth(d)
    cdep = msgs.CompressedImage(format=fmt)
    cdep.data = data
    np.testing.assert_allclose(ic.decode_depth_message(cdep), d, atol=1e-6)


def test_codec_does_not_import_rclpy() -> None:
    import subprocess
    import sys

    code = (
        'import sys, kinova_policy_ros.core.image_codec; '
        "bad = [m for m in sys.modules if m.startswith(('rclpy', 'sensor_msgs'))]; "
        'assert not bad, bad'
    )
    subprocess.run([sys.executable, '-c', code], check=True, timeout=60)
