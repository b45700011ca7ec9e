"""
The one preprocessing path shared by training (dataset), the bag converter and the robot.

Frames go through two stages so the dataset can cache the expensive one:

1. :func:`resize_frames` — each stream at its own size goes through :func:`fit_stream`:
   ``data.crop`` (fractions of the image), then the largest centred box of the model's aspect
   ratio (``data.fit: center_crop``; ``stretch`` skips it), then the resize to the model size.
   RGB stays uint8 (rounded), depth stays float32 metres. The dataset caches this stage on disk.
2. :func:`frames_to_tensors` — RGB to float32 [0, 1] channel-first, depth clipped to
   ``max_depth_m`` and scaled to [0, 1] (``normalize_depth01``), channel-first.

:func:`preprocess_frames` is both stages; the online runner calls it per frame. Colour and depth
need not have the same size or aspect ratio: each is cropped and resized on its own, and the
crop is the same *fraction* of each image, which assumes that both streams look along (about)
the same axis -- see docs/data.md, "Geometry". :class:`StreamGeometry` records the stream sizes
a model was trained on. Joint values are normalized per joint to [-1, 1] with
:class:`JointNormalizer`, whose statistics travel with the checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TYPE_CHECKING

import cv2
from kinova_policy_ros.core.config import FITS
from kinova_policy_ros.core.errors import CheckpointError, ConfigError
import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:  # torch is imported where it is used: the bag converter runs without it
    import torch

#: Below this range (rad or rad/s) a joint counts as constant: it maps to 0, no division by 0.
CONSTANT_RANGE_EPS = 1e-6

Stream = Literal['rgb', 'depth']
#: Resampling rules of :func:`fit_stream`. ``antialias`` (the model input, dataset and robot):
#: bilinear with antialiasing for both streams (torch). ``area_nearest`` (the bag converter's
#: frames): colour by pixel area when shrinking (bilinear when enlarging), depth by nearest
#: neighbour, so no depth value is invented at an object's edge (OpenCV).
Resample = Literal['antialias', 'area_nearest']
RESAMPLES: tuple[str, ...] = ('antialias', 'area_nearest')
HW = tuple[int, int]
_FIT_WORDS = {'center_crop': 'centre-cropped', 'stretch': 'stretched'}
Crop = tuple[float, float, float, float]


def crop_box(image_hw: tuple[int, int], crop: Crop) -> tuple[int, int, int, int]:
    """
    Return the pixel box ``(top, left, height, width)`` of the fractional ``crop`` in an image.

    Edges are rounded to the nearest pixel; the box is at least one pixel and inside the image.
    """
    h, w = int(image_hw[0]), int(image_hw[1])
    top, left, ch, cw = crop
    y0, x0 = min(round(top * h), h - 1), min(round(left * w), w - 1)
    y1 = min(max(round((top + ch) * h), y0 + 1), h)
    x1 = min(max(round((left + cw) * w), x0 + 1), w)
    return y0, x0, y1 - y0, x1 - x0


def stream_box(
    image_hw: tuple[int, int],
    out_hw: tuple[int, int],
    crop: Crop | None = None,
    fit: str = 'center_crop',
) -> tuple[int, int, int, int]:
    """
    Return the pixel box ``(top, left, height, width)`` that :func:`fit_stream` resizes.

    ``crop`` (fractions, :func:`crop_box`) first, the whole image when None; then, with ``fit``
    ``center_crop``, the largest box of the aspect ratio of ``out_hw`` centred in it (sides
    rounded to the nearest pixel: a box within half a pixel of that aspect is kept whole).
    """
    if fit not in FITS:
        raise ConfigError(f'data.fit: must be one of {list(FITS)}, got {fit!r}')
    h, w = int(image_hw[0]), int(image_hw[1])
    y, x, bh, bw = crop_box((h, w), crop) if crop is not None else (0, 0, h, w)
    if fit == 'stretch':
        return y, x, bh, bw
    oh, ow = int(out_hw[0]), int(out_hw[1])
    if bw * oh > bh * ow:  # wider than the model input: keep the height
        cw = min(bw, max(1, round(bh * ow / oh)))
        return y, x + (bw - cw) // 2, bh, cw
    ch = min(bh, max(1, round(bw * oh / ow)))  # taller (or equal): keep the width
    return y + (bh - ch) // 2, x, ch, bw


def _check_stream(frames: np.ndarray, stream: str) -> bool:
    """Validate a stream's frames; return whether they are one frame (no batch axis)."""
    if stream == 'rgb':
        if frames.dtype != np.uint8 or frames.ndim not in (3, 4) or frames.shape[-1] != 3:
            raise ValueError(
                f'rgb: expected uint8 [N,H,W,3] or [H,W,3], got {frames.dtype} '
                f'{list(frames.shape)}'
            )
        return frames.ndim == 3
    if stream == 'depth':
        if not np.issubdtype(frames.dtype, np.floating) or frames.ndim not in (2, 3):
            raise ValueError(
                f'depth: expected float metres [N,H,W] or [H,W], got {frames.dtype} '
                f'{list(frames.shape)}'
            )
        return frames.ndim == 2
    raise ValueError(f"stream: expected 'rgb' or 'depth', got {stream!r}")


def _resize_torch(frames: np.ndarray, stream: str, out_hw: HW) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    """Antialiased bilinear resize of [N,H,W(,3)] frames; channel-first [N,C,h,w] out."""
    if stream == 'rgb':
        # uint8 in, uint8 out: torch's channels-last uint8 kernel (the permuted HWC frames are
        # channels-last already) is ~10x faster than a float round trip and rounds the same way
        # up to one grey level.
        t = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    else:
        t = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))[:, None]
    if tuple(t.shape[-2:]) != out_hw:
        t = F.interpolate(t, size=out_hw, mode='bilinear', antialias=True, align_corners=False)
        if stream == 'depth':
            t = t.clamp_(min=0.0)
    return np.asarray(t.contiguous().numpy())


def _resize_cv2(frames: np.ndarray, stream: str, out_hw: HW) -> np.ndarray:
    """Area (colour, shrinking) / bilinear (colour, enlarging) / nearest (depth) resize, NHWC."""
    h, w = out_hw
    if frames.shape[1:3] == (h, w):
        return np.ascontiguousarray(frames)
    if stream == 'depth':
        mode = cv2.INTER_NEAREST
    else:
        shrink = h < frames.shape[1] and w < frames.shape[2]
        mode = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    out = np.empty((frames.shape[0], h, w, *frames.shape[3:]), frames.dtype)
    for i, frame in enumerate(frames):
        out[i] = cv2.resize(np.ascontiguousarray(frame), (w, h), interpolation=mode)
    return out


def fit_stream(
    frames: np.ndarray,
    out_hw: tuple[int, int],
    stream: Stream,
    *,
    crop: Crop | None = None,
    fit: str = 'center_crop',
    resample: Resample = 'antialias',
    channels_first: bool = False,
) -> np.ndarray:
    """
    Map one stream's frames from their own size to ``out_hw``: crop, then resize.

    The one geometry of the package: the dataset, the online runner and the bag converter all
    call it, for colour and depth alike, each stream at its own size. The box is
    :func:`stream_box` (``crop`` fractions, then the centred box of the aspect ratio of
    ``out_hw`` unless ``fit`` is ``stretch``); a box of exactly ``out_hw`` is copied as it is.

    :param frames: ``rgb``: uint8 ``[N,H,W,3]`` or ``[H,W,3]``; ``depth``: float metres
        ``[N,H,W]`` or ``[H,W]`` (0 = no reading).
    :param resample: ``antialias`` or ``area_nearest`` (:data:`Resample`).
    :param channels_first: return ``[N,C,h,w]`` (``[C,h,w]``) instead of the input layout.
    :return: C-contiguous uint8 RGB or float32 depth of height and width ``out_hw``.
    :raises ValueError: a bad array, naming the stream; :class:`ConfigError` a bad ``fit``.
    """
    arr = np.asarray(frames)
    single = _check_stream(arr, stream)
    if resample not in RESAMPLES:
        raise ValueError(f'{stream}: resample must be one of {list(RESAMPLES)}, got {resample!r}')
    oh, ow = int(out_hw[0]), int(out_hw[1])
    if oh < 1 or ow < 1:
        raise ValueError(f'{stream}: output size must be positive, got {list(out_hw)}')
    batch = arr[None] if single else arr
    if stream == 'depth' and batch.dtype != np.float32:
        batch = batch.astype(np.float32)
    y, x, bh, bw = stream_box(batch.shape[1:3], (oh, ow), crop, fit)
    batch = batch[:, y:y + bh, x:x + bw]
    if resample == 'antialias':
        out = _resize_torch(batch, stream, (oh, ow))  # [N,C,h,w]
        if not channels_first:
            out = out[:, 0] if stream == 'depth' else out.transpose(0, 2, 3, 1)
    else:
        out = _resize_cv2(batch, stream, (oh, ow))  # [N,h,w(,3)]
        if channels_first:
            out = out[:, None] if stream == 'depth' else out.transpose(0, 3, 1, 2)
    out = np.ascontiguousarray(out)
    return out[0] if single else out


def resize_frames(
    rgb: np.ndarray,
    depth: np.ndarray,
    resize_hw: tuple[int, int],
    crop: Crop | None = None,
    fit: str = 'center_crop',
) -> tuple[np.ndarray, np.ndarray]:
    """
    Crop and resize a stack of colour and depth frames to the model size (stage 1).

    Each stream goes through :func:`fit_stream` at its own size (the two may differ).

    :param rgb: uint8 [N, H, W, 3] RGB.
    :param depth: float32 [N, H', W'] metres (0 = invalid), the same N.
    :param resize_hw: (h, w) of the model input.
    :param crop: ``data.crop`` -- (top, left, height, width) fractions of each image kept before
        the resize (:func:`crop_box`); None keeps the whole image.
    :param fit: ``data.fit``: ``center_crop`` or ``stretch``.
    :return: uint8 [N, 3, h, w] and float32 [N, 1, h, w] metres, channel-first, C-contiguous.
    """
    if rgb.ndim != 4 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f'rgb: expected uint8 [N,H,W,3], got {rgb.dtype} {list(rgb.shape)}')
    if depth.ndim != 3 or depth.shape[0] != rgb.shape[0]:
        raise ValueError(
            f'depth: expected [N,H,W] with the N = {rgb.shape[0]} frames of rgb, got '
            f'{list(depth.shape)}'
        )
    hw = (int(resize_hw[0]), int(resize_hw[1]))
    rgb_out = fit_stream(rgb, hw, 'rgb', crop=crop, fit=fit, channels_first=True)
    depth_out = fit_stream(depth, hw, 'depth', crop=crop, fit=fit, channels_first=True)
    return rgb_out, depth_out


def _hw_text(hw: HW) -> str:
    """``WxH (aspect A)`` of a (height, width)."""
    return f'{hw[1]}x{hw[0]} (aspect {hw[1] / hw[0]:.2f})'


def _as_hw(value: object, key: str) -> HW:
    if (
        not isinstance(value, Sequence)
        or isinstance(value, str)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise CheckpointError(f'{key}: expected [height, width], positive integers, got {value!r}')
    return int(value[0]), int(value[1])


@dataclass(frozen=True)
class StreamGeometry:
    """
    The camera streams a model was trained on and the rule that made them its input.

    A checkpoint records it (``config.json`` field ``geometry``); checkpoints written before it
    existed have none (unknown). ``rgb_hw`` / ``depth_hw`` are the (height, width) of the colour
    and depth streams as the camera sent them (every size seen, usually one): the bag converter's
    report of each episode (``<episode>.json``, ``image.native_hw`` / ``depth_native_hw``), else
    the frame size stored in the episode. ``resize_hw``, ``crop`` and ``fit`` are the data config
    of :func:`fit_stream`, ``resample`` its resampling.
    """

    rgb_hw: tuple[HW, ...]
    depth_hw: tuple[HW, ...]
    resize_hw: HW
    crop: Crop | None
    fit: str
    resample: str = 'antialias'

    def to_dict(self) -> dict[str, object]:
        """Return the JSON form (lists, not tuples)."""
        return {
            'rgb_hw': [list(hw) for hw in self.rgb_hw],
            'depth_hw': [list(hw) for hw in self.depth_hw],
            'resize_hw': list(self.resize_hw),
            'crop': None if self.crop is None else list(self.crop),
            'fit': self.fit,
            'resample': self.resample,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, object], source: str = 'geometry') -> StreamGeometry:
        """Read the JSON form; a missing or bad field is a :class:`CheckpointError` naming it."""
        for key in ('rgb_hw', 'depth_hw', 'resize_hw', 'fit'):
            if key not in d:
                raise CheckpointError(f'{source}: missing field {key!r}')
        sizes: dict[str, tuple[HW, ...]] = {}
        for key in ('rgb_hw', 'depth_hw'):
            value = d[key]
            if not isinstance(value, Sequence) or isinstance(value, str):
                raise CheckpointError(f'{source}.{key}: expected a list of [height, width]')
            sizes[key] = tuple(_as_hw(v, f'{source}.{key}[{i}]') for i, v in enumerate(value))
        fit, resample = d['fit'], d.get('resample', 'antialias')
        if fit not in FITS:
            raise CheckpointError(f'{source}.fit: must be one of {list(FITS)}, got {fit!r}')
        if resample not in RESAMPLES:
            raise CheckpointError(
                f'{source}.resample: must be one of {list(RESAMPLES)}, got {resample!r}'
            )
        crop = d.get('crop')
        if crop is not None:
            if not isinstance(crop, Sequence) or len(crop) != 4:
                raise CheckpointError(f'{source}.crop: expected null or 4 fractions, got {crop!r}')
            crop = tuple(float(v) for v in crop)
        return cls(
            sizes['rgb_hw'],
            sizes['depth_hw'],
            _as_hw(d['resize_hw'], f'{source}.resize_hw'),
            crop,  # type: ignore[arg-type]
            str(fit),
            str(resample),
        )

    def mismatch(self, rgb_hw: HW, depth_hw: HW) -> str:
        """
        Say how live stream sizes differ from the training ones ('' when both were seen).

        The model still gets its input (each stream is cropped and resized on its own), but it
        sees another field of view, or the same one at another sharpness, than in training.
        """
        parts = []
        for name, live, seen in (('rgb', rgb_hw, self.rgb_hw), ('depth', depth_hw, self.depth_hw)):
            live = (int(live[0]), int(live[1]))
            if not seen or live in seen:
                continue
            trained = ', '.join(_hw_text(hw) for hw in seen)
            aspects = {round(hw[1] / hw[0], 2) for hw in seen}
            same_aspect = round(live[1] / live[0], 2) in aspects
            what = 'size' if same_aspect else 'size and aspect ratio'
            parts.append(f'{name} stream is {_hw_text(live)}, trained on {trained}: {what} differ')
        if not parts:
            return ''
        return '; '.join(parts) + (
            f' (each stream is still {_FIT_WORDS[self.fit]} to the model input '
            f'{_hw_text(self.resize_hw)}; the model sees another field of view or sharpness '
            'than in training: check the camera settings, see docs/real-gen3.md)'
        )


def describe_fit(
    image_hw: HW, out_hw: HW, crop: Crop | None = None, fit: str = 'center_crop'
) -> str:
    """Return ``WxH -> box WxH at (x, y) -> WxH``: what :func:`fit_stream` does to a stream."""
    y, x, bh, bw = stream_box(image_hw, out_hw, crop, fit)
    return (
        f'{image_hw[1]}x{image_hw[0]} -> box {bw}x{bh} at x={x} y={y} -> {out_hw[1]}x{out_hw[0]}'
    )


def frames_to_tensors(
    rgb_u8: np.ndarray,
    depth_m: np.ndarray,
    max_depth_m: float,
    normalize_depth01: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Scale resized frames to model inputs (stage 2).

    :param rgb_u8: uint8 [..., 3, h, w].
    :param depth_m: float32 [..., 1, h, w] metres.
    :return: float32 rgb in [0, 1] and float32 depth (``clip(d, 0, max) / max`` when
        ``normalize_depth01``, else metres), same shapes.
    """
    import torch

    # numpy, single-threaded: on small frames torch's intra-op threads cost more than they save,
    # and DataLoader workers must not compete with the training step for cores.
    rgb = np.asarray(rgb_u8, dtype=np.float32)
    rgb *= np.float32(1.0 / 255.0)
    depth = np.array(depth_m, dtype=np.float32)
    if normalize_depth01:
        np.clip(depth, 0.0, max_depth_m, out=depth)
        depth *= np.float32(1.0 / max_depth_m)
    return torch.from_numpy(rgb), torch.from_numpy(depth)


def preprocess_frames(
    rgb: np.ndarray,
    depth: np.ndarray,
    resize_hw: tuple[int, int],
    max_depth_m: float,
    normalize_depth01: bool,
    crop: Crop | None = None,
    fit: str = 'center_crop',
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both stages: uint8 [N,H,W,3] + metres [N,H',W'] -> float32 [N,3,h,w], [N,1,h,w]."""
    rgb_r, depth_r = resize_frames(rgb, depth, resize_hw, crop, fit)
    return frames_to_tensors(rgb_r, depth_r, max_depth_m, normalize_depth01)


@dataclass(frozen=True)
class JointStats:
    """Per-joint min/max of joint positions and velocities over the training episodes."""

    q_min: np.ndarray  # [7] rad
    q_max: np.ndarray  # [7] rad
    dq_min: np.ndarray  # [7] rad/s
    dq_max: np.ndarray  # [7] rad/s

    KEYS = ('q_min', 'q_max', 'dq_min', 'dq_max')

    def __post_init__(self) -> None:
        for key in self.KEYS:
            v = np.asarray(getattr(self, key), dtype=np.float64)
            if v.ndim != 1 or not np.all(np.isfinite(v)):
                raise ConfigError(f'stats.{key}: expected a finite 1-D array, got {v!r}')
            object.__setattr__(self, key, v)
        n = self.q_min.shape[0]
        for key in self.KEYS:
            if getattr(self, key).shape[0] != n:
                raise ConfigError(f'stats.{key}: expected {n} values, got {getattr(self, key)}')
        if np.any(self.q_max < self.q_min) or np.any(self.dq_max < self.dq_min):
            raise ConfigError('stats: a max is below its min')

    @classmethod
    def from_arrays(cls, q: np.ndarray, dq: np.ndarray) -> JointStats:
        """Compute the statistics of stacked [N, 7] positions and velocities."""
        return cls(q.min(0), q.max(0), dq.min(0), dq.max(0))

    @classmethod
    def merge(cls, parts: list[JointStats]) -> JointStats:
        """Combine the statistics of several episodes."""
        return cls(
            np.min([p.q_min for p in parts], axis=0),
            np.max([p.q_max for p in parts], axis=0),
            np.min([p.dq_min for p in parts], axis=0),
            np.max([p.dq_max for p in parts], axis=0),
        )

    def to_dict(self) -> dict[str, list[float]]:
        return {k: [float(x) for x in getattr(self, k)] for k in self.KEYS}

    @classmethod
    def from_dict(cls, d: Mapping[str, ArrayLike], source: str = 'stats') -> JointStats:
        """Read statistics; a missing one is an error (never a silent pass-through)."""
        missing = [k for k in cls.KEYS if k not in d]
        if missing:
            raise CheckpointError(f'{source}: missing normalization stat {missing[0]!r}')
        return cls(*(np.asarray(d[k], dtype=np.float64) for k in cls.KEYS))

    @property
    def q(self) -> JointNormalizer:
        return JointNormalizer(self.q_min, self.q_max)

    @property
    def dq(self) -> JointNormalizer:
        return JointNormalizer(self.dq_min, self.dq_max)


class JointNormalizer:
    """Per-joint min-max normalization to [-1, 1]; a constant joint maps to 0."""

    def __init__(self, lo: np.ndarray, hi: np.ndarray) -> None:
        lo = np.asarray(lo, dtype=np.float64)
        hi = np.asarray(hi, dtype=np.float64)
        span = hi - lo
        const = span < CONSTANT_RANGE_EPS
        self.scale: NDArray[np.float64] = np.where(const, 1.0, 2.0 / np.where(const, 1.0, span))
        self.center: NDArray[np.float64] = (lo + hi) / 2.0

    def normalize(self, x: ArrayLike) -> NDArray[np.float32]:
        """Map radians (or rad/s) to normalized values; float32."""
        out = (np.asarray(x, dtype=np.float64) - self.center) * self.scale
        return out.astype(np.float32)

    def denormalize(self, x: ArrayLike) -> NDArray[np.float64]:
        """Map normalized values back to radians (or rad/s); float64."""
        out: NDArray[np.float64] = np.asarray(x, dtype=np.float64) / self.scale + self.center
        return out
