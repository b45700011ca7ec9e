"""
Fuzz tests of the image decoders on the node's path (hypothesis): hostile Image fields.

Every generated message either decodes to a finite, correctly shaped array or raises
:class:`DecodeError` whose message names the field (``encoding``, ``height``, ``width``,
``step``, ``data``, ``is_bigendian``, ``format``); no other exception, no hang (each case runs
under an alarm), and no allocation from a claimed size that the payload does not back.
"""

from collections.abc import Callable
import re
import tracemalloc
from types import SimpleNamespace

from helpers import bounded
from hypothesis import given, HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from kinova_policy_ros.core import image_codec as ic
from kinova_policy_ros.core.errors import DecodeError
import numpy as np
import pytest

CASES = settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
FEW = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
FIELD = re.compile(r'encoding|height|width|step|data|is_bigendian|format')
ALARM_S = 10  # a case still running after this long is a hang (a failure), not a slow case

ENCODINGS = st.one_of(
    st.sampled_from(ic.COLOR_ENCODINGS + ic.DEPTH_ENCODINGS),
    st.sampled_from(['', 'RGB8', 'yuv422', 'bayer_rggb8', '32FC3', '64FC1', '16SC1']),
    st.text(max_size=12),
)
# Sizes: small real ones, zero, negative, and claims far beyond any payload.
SIZES = st.one_of(
    st.integers(0, 6), st.integers(-3, -1), st.sampled_from([2**31 - 1, 2**32, 2**62, 10**30])
)
ODD_VALUES = st.sampled_from([None, 'x', 1.5, float('nan'), True, b'1', [1]])


def _decode_or_error(decode: Callable[[object], np.ndarray], msg: object) -> np.ndarray | None:
    """Decode ``msg``; a DecodeError must name a field. Any other exception fails the test."""
    with bounded(ALARM_S):
        try:
            return decode(msg)
        except DecodeError as err:
            assert FIELD.search(str(err)), f'error names no field: {err}'
            return None


@st.composite
def raw_images(draw: st.DrawFn) -> SimpleNamespace:
    """Draw an Image-like object: any encoding, sizes, step and a payload that may not match."""
    h, w = draw(SIZES), draw(SIZES)
    encoding = draw(ENCODINGS)
    bpp = draw(st.sampled_from([1, 2, 3, 4]))
    row = max(w, 0) * bpp
    step = draw(st.one_of(st.just(row), st.integers(row, row + 8), SIZES))
    claimed = h * step if 0 <= h * step < 4096 else 64
    length = draw(
        st.one_of(
            st.just(claimed),
            st.integers(max(claimed - 8, 0), claimed + 8),
            st.integers(0, 256),
        )
    )
    data = draw(st.binary(min_size=length, max_size=length))
    fields = {
        'height': h,
        'width': w,
        'encoding': encoding,
        'is_bigendian': draw(st.sampled_from([0, 1])),
        'step': step,
        'data': data,
    }
    # Now and then a field of the wrong type, or a payload that is not bytes.
    if draw(st.integers(0, 9)) == 0:
        fields[draw(st.sampled_from(sorted(fields)))] = draw(ODD_VALUES)
    elif draw(st.integers(0, 9)) == 0:
        fields['data'] = draw(
            st.sampled_from([[*data[:3], 300], 'abc', np.zeros(2, object), 7])
        )
    return SimpleNamespace(**fields)


def _check_rgb(out: np.ndarray, msg: SimpleNamespace) -> None:
    assert out.dtype == np.uint8 and out.shape == (msg.height, msg.width, 3)
    assert out.flags.writeable and out.flags.owndata


def _check_depth(out: np.ndarray, msg: SimpleNamespace) -> None:
    assert out.dtype == np.float32 and out.shape == (msg.height, msg.width)
    assert np.all(np.isfinite(out)) and np.all(out >= 0.0)


@CASES
@given(raw_images())
def test_raw_image_decodes_or_names_the_field(msg: SimpleNamespace) -> None:
    """decode_rgb / decode_depth (and the *_message dispatchers): shaped array or DecodeError."""
    for decode, check in (
        (ic.decode_rgb, _check_rgb),
        (ic.decode_rgb_message, _check_rgb),
        (ic.decode_depth, _check_depth),
        (ic.decode_depth_message, _check_depth),
    ):
        out = _decode_or_error(decode, msg)
        if out is not None:
            check(out, msg)


@FEW
@given(
    hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=2, max_dims=2, max_side=6),
        elements=st.floats(width=32, allow_nan=True, allow_infinity=True),
    ),
    st.booleans(),
    st.integers(0, 5),
)
def test_float_depth_keeps_positive_finite_values_only(
    depth: np.ndarray, bigendian: bool, pad: int
) -> None:
    """32FC1 with NaN, +-inf, negatives, subnormals, either byte order, padded rows."""
    h, w = depth.shape
    stored = depth.astype('>f4' if bigendian else '<f4').view(np.uint8).reshape(h, w * 4)
    rows = np.concatenate([stored, np.full((h, pad), 0x7F, np.uint8)], axis=1)
    msg = SimpleNamespace(
        height=h, width=w, encoding='32FC1', is_bigendian=int(bigendian), step=w * 4 + pad,
        data=rows.tobytes(),
    )
    with bounded(ALARM_S):
        out = ic.decode_depth(msg)
    with np.errstate(invalid='ignore'):
        expected = np.where(np.isfinite(depth) & (depth > 0), depth, np.float32(0.0))
    np.testing.assert_array_equal(out, expected)


def _valid_payloads() -> list[tuple[str, bytes]]:
    rgb = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    depth = np.random.default_rng(1).uniform(0.2, 3.0, (6, 5)).astype(np.float32)
    return [
        ic.encode_compressed_rgb(rgb, 'jpeg'),
        ic.encode_compressed_rgb(rgb, 'png'),
        ic.encode_compressed_depth(depth),
    ]


PAYLOADS = _valid_payloads()


@st.composite
def compressed_images(draw: st.DrawFn) -> SimpleNamespace:
    """Draw a CompressedImage-like object: valid, truncated, bit-flipped or random payload."""
    fmt, payload = draw(st.sampled_from(PAYLOADS))
    mode = draw(st.sampled_from(['random', 'truncated', 'flipped', 'valid']))
    data = bytearray(payload)
    if mode == 'random':
        data = bytearray(draw(st.binary(max_size=200)))
    elif mode == 'truncated':
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif mode == 'flipped':
        for pos in draw(st.lists(st.integers(0, len(data) * 8 - 1), min_size=1, max_size=8)):
            data[pos // 8] ^= 1 << (pos % 8)
    fmt = draw(
        st.one_of(
            st.just(fmt),
            st.sampled_from(['jpeg', 'png', '32FC1; compressedDepth png', 'rvl', '', 'tiff']),
            st.text(max_size=20),
        )
    )
    return SimpleNamespace(format=fmt, data=bytes(data))


@FEW
@given(compressed_images())
def test_compressed_image_decodes_or_names_the_field(msg: SimpleNamespace) -> None:
    """decode_compressed_rgb / _depth: [H, W, 3] uint8 / finite [H, W] float32 or DecodeError."""
    rgb = _decode_or_error(ic.decode_compressed_rgb, msg)
    if rgb is not None:
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
        assert min(rgb.shape) >= 1
    depth = _decode_or_error(ic.decode_compressed_depth, msg)
    if depth is not None:
        assert depth.dtype == np.float32 and depth.ndim == 2 and min(depth.shape) >= 1
        assert np.all(np.isfinite(depth)) and np.all(depth >= 0.0)


@pytest.mark.parametrize(
    ('field', 'value'),
    [('height', 'x'), ('width', 1.5), ('step', None), ('is_bigendian', 'yes'), ('height', True)],
)
def test_non_integer_field_is_a_decode_error_naming_it(field: str, value: object) -> None:
    """Regression: int() of a hostile field raised ValueError/TypeError, not DecodeError."""
    msg = SimpleNamespace(height=1, width=1, encoding='16UC1', is_bigendian=0, step=2, data=b'ab')
    setattr(msg, field, value)
    with pytest.raises(DecodeError, match=rf'field {field} must be an integer, got'):
        ic.decode_depth(msg)


@pytest.mark.parametrize('data', ['abc', [1, 2, 300], np.zeros(3, object)])
def test_payload_that_is_not_bytes_is_a_decode_error(data: object) -> None:
    """Regression: a str payload, a list with a value > 255 or an object array leaked errors."""
    msg = SimpleNamespace(height=1, width=1, encoding='rgb8', is_bigendian=0, step=3, data=data)
    with pytest.raises(DecodeError, match='field data is not a byte sequence'):
        ic.decode_rgb(msg)
    with pytest.raises(DecodeError, match='field data is not a byte sequence'):
        ic.decode_compressed_rgb(SimpleNamespace(format='png', data=data))


def test_one_row_image_with_a_huge_step_decodes() -> None:
    """Regression: a one-row image's step is never used to reach a second row (it overflowed)."""
    msg = SimpleNamespace(
        height=1, width=1, encoding='rgb8', is_bigendian=0, step=2**70, data=b'\x01\x02\x03'
    )
    np.testing.assert_array_equal(ic.decode_rgb(msg), [[[1, 2, 3]]])


def test_encoding_that_is_not_a_string_is_a_decode_error() -> None:
    msg = SimpleNamespace(height=1, width=1, encoding=None, is_bigendian=0, step=3, data=b'abc')
    with pytest.raises(DecodeError, match='field encoding must be a string, got None'):
        ic.decode_rgb(msg)


@pytest.mark.parametrize('encoding', ['rgb8', '32FC1'])
def test_huge_claimed_size_allocates_nothing(encoding: str) -> None:
    """A 2^31 x 2^31 claim backed by 12 bytes is refused before any buffer of that size."""
    msg = SimpleNamespace(
        height=2**31, width=2**31, encoding=encoding, is_bigendian=0, step=2**33, data=bytes(12)
    )
    decode = ic.decode_rgb if encoding == 'rgb8' else ic.decode_depth
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError, match='data has 12 bytes'):
            decode(msg)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f'peak {peak} bytes while refusing a 12-byte payload'
