"""
The one preprocessing path shared by training (dataset) and the robot (online runner).

Frames go through two stages so the dataset can cache the expensive one:

1. :func:`resize_frames` — decode-size images (optionally cropped to ``data.crop``) to the
   model size: RGB stays uint8 (rounded), depth stays float32 metres. The dataset caches this
   stage on disk.
2. :func:`frames_to_tensors` — RGB to float32 [0, 1] channel-first, depth clipped to
   ``max_depth_m`` and scaled to [0, 1] (``normalize_depth01``), channel-first.

:func:`preprocess_frames` is both stages; the online runner calls it per frame. Joint values are
normalized per joint to [-1, 1] with :class:`JointNormalizer`, whose statistics travel with the
checkpoint.
"""

from collections.abc import Mapping
from dataclasses import dataclass

from kinova_policy_ros.core.errors import CheckpointError, ConfigError
import numpy as np
from numpy.typing import ArrayLike, NDArray
import torch
import torch.nn.functional as F

#: Below this range (rad or rad/s) a joint counts as constant: it maps to 0, no division by 0.
CONSTANT_RANGE_EPS = 1e-6


def crop_box(
    image_hw: tuple[int, int], crop: tuple[float, float, float, float]
) -> tuple[int, int, int, int]:
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


def resize_frames(
    rgb: np.ndarray,
    depth: np.ndarray,
    resize_hw: tuple[int, int],
    crop: tuple[float, float, float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """
    Crop and resize a stack of frames to the model size (stage 1).

    :param rgb: uint8 [N, H, W, 3] RGB.
    :param depth: float32 [N, H, W] metres (0 = invalid).
    :param resize_hw: (h, w) of the model input.
    :param crop: ``data.crop`` -- (top, left, height, width) fractions of the image kept before
        the resize (:func:`crop_box`); None keeps the whole image.
    :return: uint8 [N, 3, h, w] and float32 [N, 1, h, w] metres, channel-first, C-contiguous.
    """
    if rgb.ndim != 4 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f'rgb: expected uint8 [N,H,W,3], got {rgb.dtype} {list(rgb.shape)}')
    if depth.ndim != 3 or depth.shape != rgb.shape[:3]:
        raise ValueError(
            f'depth: expected [N,H,W] matching rgb {list(rgb.shape[:3])}, got {list(depth.shape)}'
        )
    if crop is not None:
        y, x, ch, cw = crop_box(rgb.shape[1:3], crop)
        rgb, depth = rgb[:, y:y + ch, x:x + cw], depth[:, y:y + ch, x:x + cw]
    h, w = int(resize_hw[0]), int(resize_hw[1])
    rgb_t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(0, 3, 1, 2)  # [N,3,H,W] uint8
    depth_t = torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32))[:, None]  # [N,1,H,W]
    if rgb_t.shape[-2:] != (h, w):
        # uint8 in, uint8 out: torch's channels-last uint8 kernel (the permuted HWC frames are
        # channels-last already) is ~10x faster than a float round trip and rounds the same way
        # up to one grey level.
        rgb_t = F.interpolate(
            rgb_t, size=(h, w), mode='bilinear', antialias=True, align_corners=False
        )
        depth_t = F.interpolate(
            depth_t, size=(h, w), mode='bilinear', antialias=True, align_corners=False
        ).clamp_(min=0.0)
    return rgb_t.contiguous().numpy(), depth_t.contiguous().numpy()


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
    crop: tuple[float, float, float, float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both stages: uint8 [N,H,W,3] + metres [N,H,W] -> float32 [N,3,h,w], [N,1,h,w]."""
    rgb_r, depth_r = resize_frames(rgb, depth, resize_hw, crop)
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
    def from_arrays(cls, q: np.ndarray, dq: np.ndarray) -> 'JointStats':
        """Compute the statistics of stacked [N, 7] positions and velocities."""
        return cls(q.min(0), q.max(0), dq.min(0), dq.max(0))

    @classmethod
    def merge(cls, parts: list['JointStats']) -> 'JointStats':
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
    def from_dict(cls, d: Mapping[str, ArrayLike], source: str = 'stats') -> 'JointStats':
        """Read statistics; a missing one is an error (never a silent pass-through)."""
        missing = [k for k in cls.KEYS if k not in d]
        if missing:
            raise CheckpointError(f'{source}: missing normalization stat {missing[0]!r}')
        return cls(*(np.asarray(d[k], dtype=np.float64) for k in cls.KEYS))

    @property
    def q(self) -> 'JointNormalizer':
        return JointNormalizer(self.q_min, self.q_max)

    @property
    def dq(self) -> 'JointNormalizer':
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
