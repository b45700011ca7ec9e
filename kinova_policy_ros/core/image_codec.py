"""
The project's one codec for ROS image payloads (pure numpy + OpenCV, no rclpy).

Every function is duck-typed: it reads the attributes of a ``sensor_msgs/Image``
(``height, width, encoding, is_bigendian, step, data``) or ``sensor_msgs/CompressedImage``
(``format, data``), so rclpy messages, rosbags-deserialized messages and plain objects such as
:class:`ImageFields` all decode the same way. Decoded arrays are always writable copies that own
their memory (safe for ``torch.from_numpy``); colour images are RGB, never BGR; depth is float32
metres with 0 wherever the sensor had no valid reading.
"""

from __future__ import annotations

from dataclasses import dataclass
import struct
from typing import Protocol, SupportsInt, TYPE_CHECKING, TypeVar

import cv2
from kinova_policy_ros.core.errors import DecodeError
import numpy as np

if TYPE_CHECKING:
    from typing_extensions import TypeIs

__all__ = [
    'COLOR_ENCODINGS',
    'DEPTH_ENCODINGS',
    'CompressedImageMsg',
    'ImageFields',
    'RawImageMsg',
    'WritableImageMsg',
    'decode_compressed_depth',
    'decode_compressed_rgb',
    'decode_depth',
    'decode_depth_message',
    'decode_rgb',
    'decode_rgb_message',
    'encode_compressed_depth',
    'encode_compressed_rgb',
    'encode_depth',
    'encode_rgb8',
    'fill_image_msg',
    'is_compressed',
]

# encoding -> (channels, index order that turns the stored channels into R, G, B)
_COLOR: dict[str, tuple[int, tuple[int, int, int]]] = {
    'rgb8': (3, (0, 1, 2)),
    'bgr8': (3, (2, 1, 0)),
    'rgba8': (4, (0, 1, 2)),
    'bgra8': (4, (2, 1, 0)),
    'mono8': (1, (0, 0, 0)),
    '8UC1': (1, (0, 0, 0)),
}
# encoding -> (numpy little-endian dtype string, scale to metres)
_DEPTH: dict[str, tuple[str, float]] = {
    '16UC1': ('<u2', 0.001),
    'mono16': ('<u2', 0.001),
    '32FC1': ('<f4', 1.0),
}
COLOR_ENCODINGS: tuple[str, ...] = tuple(_COLOR)
DEPTH_ENCODINGS: tuple[str, ...] = tuple(_DEPTH)

# compressed_depth_image_transport ConfigHeader: int32 format (INV_DEPTH = 0), float32[2] params.
_DEPTH_HEADER = struct.Struct('<iff')
_PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
_JPEG_MAGIC = b'\xff\xd8'


@dataclass(frozen=True)
class ImageFields:
    """The fields of a ``sensor_msgs/Image`` as plain Python values (no ROS types)."""

    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: bytes


class RawImageMsg(Protocol):
    """What the decoders read of a ``sensor_msgs/Image`` (rclpy, rosbags, :class:`ImageFields`)."""

    @property
    def height(self) -> SupportsInt: ...

    @property
    def width(self) -> SupportsInt: ...

    @property
    def encoding(self) -> str: ...

    @property
    def is_bigendian(self) -> SupportsInt: ...

    @property
    def step(self) -> SupportsInt: ...

    @property
    def data(self) -> object: ...  # bytes, array.array, a uint8 array or a list of ints


class CompressedImageMsg(Protocol):
    """What the decoders read of a ``sensor_msgs/CompressedImage``."""

    @property
    def format(self) -> str: ...  # noqa: A003, RUF100 - the message field

    @property
    def data(self) -> object: ...


class WritableImageMsg(Protocol):
    """An Image message object whose fields :func:`fill_image_msg` sets."""

    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: bytes


_Msg = TypeVar('_Msg', bound=WritableImageMsg)


def _payload(msg: RawImageMsg | CompressedImageMsg, what: str) -> np.ndarray:
    """Return the ``data`` field of a message as a flat uint8 array (no copy when possible)."""
    data = getattr(msg, 'data', None)
    if data is None:
        raise DecodeError(f'{what}: message has no data field ({type(msg).__name__})')
    try:
        if isinstance(data, np.ndarray):
            if data.dtype == np.uint8:
                return data.reshape(-1)
            return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
        if isinstance(data, str):
            raise TypeError('a str, not bytes')
        try:
            return np.frombuffer(data, dtype=np.uint8)
        except (TypeError, ValueError):
            return np.asarray(data, dtype=np.uint8).reshape(-1)
    except (TypeError, ValueError, OverflowError) as err:
        raise DecodeError(
            f'{what}: field data is not a byte sequence ({type(data).__name__}: {err})'
        ) from err


def _int_field(msg: RawImageMsg, name: str, what: str) -> int:
    """Return the integer field ``name`` of an Image message; DecodeError names a bad one."""
    value = getattr(msg, name, None)
    if isinstance(value, (bool, float)) or not isinstance(value, (int, np.integer)):
        raise DecodeError(f'{what}: field {name} must be an integer, got {value!r}')
    return int(value)


def _encoding(msg: RawImageMsg) -> str:
    """Return the ``encoding`` field; DecodeError when it is missing or not a string."""
    encoding = getattr(msg, 'encoding', None)
    if not isinstance(encoding, str):
        raise DecodeError(f'image: field encoding must be a string, got {encoding!r}')
    return encoding


def _geometry(msg: RawImageMsg, bytes_per_pixel: int) -> tuple[int, int, int, np.ndarray]:
    """Check height/width/step against the payload length; return (h, w, step, payload)."""
    encoding = _encoding(msg)
    what = f'image encoding {encoding!r}'
    h, w, step = (_int_field(msg, k, what) for k in ('height', 'width', 'step'))
    data = _payload(msg, what)
    row = w * bytes_per_pixel
    if h <= 0 or w <= 0:
        raise DecodeError(f'image encoding {encoding!r}: empty image (height={h}, width={w})')
    if step < row:
        raise DecodeError(
            f'image encoding {encoding!r}: step {step} is smaller than width {w} x '
            f'{bytes_per_pixel} bytes per pixel = {row}'
        )
    full, minimal = step * h, step * (h - 1) + row
    if data.size not in (full, minimal):
        raise DecodeError(
            f'image encoding {encoding!r}: data has {data.size} bytes, expected {full} '
            f'(height {h} x step {step}) for a {h}x{w} image'
        )
    # A one-row image never steps to a second row: its step only has to cover the row.
    return h, w, step if h > 1 else row, data


def decode_rgb(msg: RawImageMsg, out: np.ndarray | None = None) -> np.ndarray:
    """
    Decode a raw ``sensor_msgs/Image`` to a uint8 ``[H, W, 3]`` RGB array (a writable copy).

    Encodings rgb8, bgr8, rgba8, bgra8 (alpha dropped) and mono8 (replicated to three channels);
    ``step`` row padding is honoured.

    :param out: decode into this uint8 ``[H, W, 3]`` array (e.g. a slot of a frame buffer)
        instead of a new one; a size mismatch is a :class:`DecodeError`.
    """
    encoding = _encoding(msg)
    if encoding not in _COLOR:
        raise DecodeError(
            f'unsupported RGB image encoding {encoding!r} '
            f'({getattr(msg, "height", "?")}x{getattr(msg, "width", "?")}); '
            f'supported: {", ".join(COLOR_ENCODINGS)}'
        )
    channels, order = _COLOR[encoding]
    h, w, step, data = _geometry(msg, channels)
    view = np.ndarray((h, w, channels), dtype=np.uint8, buffer=data, strides=(step, channels, 1))
    if out is None:
        out = np.empty((h, w, 3), dtype=np.uint8)
    elif out.shape != (h, w, 3) or out.dtype != np.uint8:
        raise DecodeError(
            f'{encoding} image of {h}x{w} cannot be decoded into a {out.dtype} {out.shape} array'
        )
    if channels == 1:
        out[...] = view
    elif order == (0, 1, 2):
        out[...] = view[..., :3]
    else:
        out[...] = view[..., 2::-1]
    return out


def decode_depth(msg: RawImageMsg, out: np.ndarray | None = None) -> np.ndarray:
    """
    Decode a raw depth ``sensor_msgs/Image`` to float32 ``[H, W]`` metres (a writable copy).

    16UC1 (and mono16) are millimetres, 32FC1 metres; ``is_bigendian`` and ``step`` are honoured.
    Non-finite, negative and zero readings become 0.

    :param out: decode into this float32 ``[H, W]`` array instead of a new one; a size mismatch
        is a :class:`DecodeError`.
    """
    encoding = _encoding(msg)
    if encoding not in _DEPTH:
        raise DecodeError(
            f'unsupported depth image encoding {encoding!r} '
            f'({getattr(msg, "height", "?")}x{getattr(msg, "width", "?")}); '
            f'supported: {", ".join(DEPTH_ENCODINGS)}'
        )
    dtype_str, scale = _DEPTH[encoding]
    dtype = np.dtype(dtype_str)
    if _int_field(msg, 'is_bigendian', f'depth image encoding {encoding!r}'):
        dtype = dtype.newbyteorder('>')
    h, w, step, data = _geometry(msg, dtype.itemsize)
    view = np.ndarray((h, w), dtype=dtype, buffer=data, strides=(step, dtype.itemsize))
    if out is None:
        out = np.empty((h, w), dtype=np.float32)
    elif out.shape != (h, w) or out.dtype != np.float32:
        raise DecodeError(
            f'{encoding} depth image of {h}x{w} cannot be decoded into a {out.dtype} '
            f'{out.shape} array'
        )
    if scale != 1.0:
        np.multiply(view, np.float32(scale), out=out)  # one pass: cast and scale
    else:
        out[...] = view
        out[~(out > 0) | ~np.isfinite(out)] = 0.0
    return out


def _split_format(fmt: str) -> tuple[str, str]:
    """Split an image_transport format string into (source encoding, rest), both lower-case."""
    head, _, rest = fmt.partition(';')
    return head.strip(), rest.strip().lower()


def _imdecode(data: np.ndarray, fmt: str, what: str) -> np.ndarray:
    if data.size == 0:
        raise DecodeError(f'{what} (format {fmt!r}): empty payload')
    try:
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as err:
        raise DecodeError(f'{what} (format {fmt!r}): corrupt payload: {err}') from err
    if img is None:
        raise DecodeError(
            f'{what} (format {fmt!r}): cannot decode {data.size} bytes '
            f'(not a valid jpeg/png payload)'
        )
    return np.asarray(img)


def decode_compressed_rgb(msg: CompressedImageMsg) -> np.ndarray:
    """
    Decode a ``sensor_msgs/CompressedImage`` (jpeg or png) to uint8 ``[H, W, 3]`` RGB.

    Accepts the format strings image_transport writes (``'rgb8; jpeg compressed bgr8'``,
    ``'bgr8; png compressed bgr8'``) and bare ones (``'jpeg'``, ``'png'``). The payload is a
    standard jpeg/png file, so OpenCV's BGR result is converted to RGB whatever the source
    encoding was.
    """
    fmt = str(msg.format)
    _, rest = _split_format(fmt)
    lowered = fmt.lower()
    if 'compresseddepth' in lowered.replace(' ', ''):
        raise DecodeError(
            f'compressed RGB image: format {fmt!r} is a compressedDepth image; '
            'use decode_compressed_depth'
        )
    if rest and not any(k in rest for k in ('jpeg', 'jpg', 'png')):
        raise DecodeError(f'compressed RGB image: unsupported format {fmt!r} (jpeg or png)')
    img = _imdecode(_payload(msg, 'compressed RGB image'), fmt, 'compressed RGB image')
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise DecodeError(f'compressed RGB image (format {fmt!r}): unsupported dtype {img.dtype}')
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    if img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    raise DecodeError(
        f'compressed RGB image (format {fmt!r}): unsupported channel count {img.shape[2]}'
    )


def decode_compressed_depth(msg: CompressedImageMsg) -> np.ndarray:
    """
    Decode a compressedDepth ``sensor_msgs/CompressedImage`` to float32 ``[H, W]`` metres.

    The payload is compressed_depth_image_transport's 12-byte ConfigHeader followed by a png of
    16-bit values: millimetres for a ``16UC1`` source, quantized inverse depth
    (``d = A / (v - B)``, ``v == 0`` invalid) for a ``32FC1`` source. A payload that starts with
    the png signature (no header) is accepted too. RVL payloads raise :class:`DecodeError`.
    """
    fmt = str(msg.format)
    encoding, rest = _split_format(fmt)
    if 'rvl' in rest:
        raise DecodeError(
            f'compressed depth image: format {fmt!r} (RVL) is not supported; '
            'record with the png compressedDepth format'
        )
    data = _payload(msg, 'compressed depth image')
    params = (0, 0.0, 0.0)
    if data[: len(_PNG_MAGIC)].tobytes() != _PNG_MAGIC:
        if data.size < _DEPTH_HEADER.size + len(_PNG_MAGIC):
            raise DecodeError(
                f'compressed depth image (format {fmt!r}): payload of {data.size} bytes is '
                f'shorter than the {_DEPTH_HEADER.size}-byte header plus a png'
            )
        header_end = _DEPTH_HEADER.size
        params = _DEPTH_HEADER.unpack(data[:header_end].tobytes())
        data = data[header_end:]
    raw = _imdecode(data, fmt, 'compressed depth image')
    if raw.ndim != 2 or raw.dtype != np.uint16:
        raise DecodeError(
            f'compressed depth image (format {fmt!r}): expected a single-channel 16-bit png, '
            f'got dtype {raw.dtype} shape {raw.shape}'
        )
    if encoding in ('16UC1', 'mono16', ''):
        return raw.astype(np.float32) * np.float32(0.001)
    if encoding == '32FC1':
        quant_a, quant_b = float(params[1]), float(params[2])
        if quant_a == 0.0:
            raise DecodeError(
                f'compressed depth image (format {fmt!r}): 32FC1 payload without inverse-depth '
                f'parameters (header {params})'
            )
        v = raw.astype(np.float64)
        with np.errstate(divide='ignore', invalid='ignore'):
            depth = np.where(raw > 0, quant_a / (v - quant_b), 0.0)
        depth[~np.isfinite(depth) | (depth < 0)] = 0.0
        return depth.astype(np.float32)
    raise DecodeError(
        f'compressed depth image: unsupported source encoding {encoding!r} in format {fmt!r} '
        '(16UC1 or 32FC1)'
    )


def is_compressed(msg: RawImageMsg | CompressedImageMsg) -> TypeIs[CompressedImageMsg]:
    """Return True for a CompressedImage-like message (it has a ``format`` field)."""
    return hasattr(msg, 'format') and not hasattr(msg, 'encoding')


def decode_rgb_message(msg: RawImageMsg | CompressedImageMsg) -> np.ndarray:
    """Decode an Image or CompressedImage to uint8 RGB, whichever ``msg`` is."""
    return decode_compressed_rgb(msg) if is_compressed(msg) else decode_rgb(msg)


def decode_depth_message(msg: RawImageMsg | CompressedImageMsg) -> np.ndarray:
    """Decode a depth Image or compressedDepth CompressedImage to float32 metres."""
    return decode_compressed_depth(msg) if is_compressed(msg) else decode_depth(msg)


def _check_rgb(rgb: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise DecodeError(f'{what}: expected a uint8 [H, W, 3] array, got {arr.dtype} {arr.shape}')
    return arr


def _check_depth(depth_m: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(depth_m)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.floating):
        raise DecodeError(
            f'{what}: expected a float [H, W] array in metres, got {arr.dtype} {arr.shape}'
        )
    return arr


def _depth_to_mm(depth_m: np.ndarray) -> np.ndarray:
    d = np.asarray(depth_m, dtype=np.float64)
    mm = np.where(np.isfinite(d), np.rint(d * 1000.0), 0.0)
    return np.clip(mm, 0, np.iinfo(np.uint16).max).astype('<u2')


def encode_rgb8(rgb: np.ndarray) -> ImageFields:
    """Encode a uint8 ``[H, W, 3]`` RGB array as the fields of an ``rgb8`` Image (no padding)."""
    arr = _check_rgb(rgb, 'encode_rgb8')
    h, w = arr.shape[:2]
    return ImageFields(h, w, 'rgb8', 0, w * 3, np.ascontiguousarray(arr).tobytes())


def encode_depth(depth_m: np.ndarray, encoding: str = '16UC1') -> ImageFields:
    """
    Encode float metres as the fields of a depth Image, little-endian.

    ``16UC1``: millimetres rounded to the nearest integer, clipped to [0, 65535], non-finite -> 0.
    ``32FC1``: metres as float32.
    """
    arr = _check_depth(depth_m, f'encode_depth({encoding!r})')
    h, w = arr.shape
    if encoding == '16UC1':
        return ImageFields(h, w, '16UC1', 0, w * 2, _depth_to_mm(arr).tobytes())
    if encoding == '32FC1':
        return ImageFields(h, w, '32FC1', 0, w * 4, arr.astype('<f4').tobytes())
    raise DecodeError(f'encode_depth: unsupported encoding {encoding!r} (16UC1 or 32FC1)')


def encode_compressed_rgb(
    rgb: np.ndarray, fmt: str = 'jpeg', *, jpeg_quality: int = 95
) -> tuple[str, bytes]:
    """
    Encode uint8 RGB as a CompressedImage payload, as image_transport's compressed plugin does.

    Returns the format string (``'rgb8; jpeg compressed bgr8'`` or
    ``'rgb8; png compressed bgr8'``) and the jpeg/png bytes.
    """
    arr = _check_rgb(rgb, 'encode_compressed_rgb')
    if fmt not in ('jpeg', 'png'):
        raise DecodeError(f'encode_compressed_rgb: unsupported format {fmt!r} (jpeg or png)')
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if fmt == 'jpeg' else []
    ok, buf = cv2.imencode('.jpg' if fmt == 'jpeg' else '.png', arr[:, :, ::-1], params)
    if not ok:
        raise DecodeError(f'encode_compressed_rgb: OpenCV could not encode {arr.shape} as {fmt}')
    return f'rgb8; {fmt} compressed bgr8', buf.tobytes()


def encode_compressed_depth(depth_m: np.ndarray) -> tuple[str, bytes]:
    """
    Encode float metres as a 16UC1 compressedDepth payload (12-byte header + png of millimetres).

    Returns the format string ``'16UC1; compressedDepth png'`` and the payload bytes.
    """
    arr = _check_depth(depth_m, 'encode_compressed_depth')
    ok, buf = cv2.imencode('.png', _depth_to_mm(arr))
    if not ok:
        raise DecodeError(f'encode_compressed_depth: OpenCV could not encode {arr.shape}')
    return '16UC1; compressedDepth png', _DEPTH_HEADER.pack(0, 0.0, 0.0) + buf.tobytes()


def fill_image_msg(msg: _Msg, fields: ImageFields) -> _Msg:
    """Copy :class:`ImageFields` into an Image message object (rclpy or rosbags) and return it."""
    msg.height = fields.height
    msg.width = fields.width
    msg.encoding = fields.encoding
    msg.is_bigendian = fields.is_bigendian
    msg.step = fields.step
    msg.data = fields.data
    return msg
