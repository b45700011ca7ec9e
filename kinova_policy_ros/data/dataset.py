"""
``KinovaJointDataset``: every frame of every npz episode is one training sample (docs/data.md).

Each episode is decoded, validated and resized ONCE into an on-disk cache of ``.npy`` files
(keyed by the file's content hash and the image size) that samples then read through memory
maps: a sample costs K small frame reads whatever the episode length, and RAM does not grow with
the dataset (the OS page cache holds what is hot). The cache stores stage 1 of
:mod:`kinova_policy_ros.data.preprocess`; stage 2 (scaling) runs per sample, exactly as online.
"""

from collections.abc import Sequence
from dataclasses import dataclass, fields
import hashlib
import json
import os
from pathlib import Path
import shutil
import tempfile

from kinova_policy_ros.core import kinematics as kin
from kinova_policy_ros.core.config import DataConfig
from kinova_policy_ros.core.errors import ConfigError, SchemaError
from kinova_policy_ros.data.preprocess import (
    frames_to_tensors,
    JointStats,
    resize_frames,
    StreamGeometry,
)
from kinova_policy_ros.data.schema import check_episode, read_arrays
import numpy as np
from numpy.typing import NDArray
import torch

CACHE_VERSION = 4  # 4: data.fit (centre crop to the model's aspect ratio)
#: The auxiliary goal target (``with_goal``) is in units of 1/GOAL_SCALE m (0.2 m).
GOAL_SCALE = 5.0
_CHUNK = 64  # frames resized at a time while building the cache


def default_cache_dir() -> Path:
    """``$KINOVA_POLICY_CACHE``, else ``~/.cache/kinova_policy_ros``."""
    env = os.environ.get('KINOVA_POLICY_CACHE')
    return Path(env) if env else Path.home() / '.cache' / 'kinova_policy_ros'


def list_episode_files(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
) -> list[Path]:
    """Return the episode files: a folder's ``*.npz`` (sorted) or the given files, sorted."""
    if isinstance(source, str | os.PathLike):
        p = Path(source)
        if p.is_dir():
            files = sorted(p.glob('*.npz'))
            if not files:
                raise SchemaError(f'{p}: no *.npz episode files in this folder')
            return files
        if not p.exists():
            raise SchemaError(f'{p}: no such episode file or folder')
        return [p]
    files = sorted(Path(f) for f in source)
    if not files:
        raise SchemaError('no episode files given')
    return files


def file_digest(path: Path) -> str:
    """Content hash of a file (BLAKE2b-128, hex)."""
    h = hashlib.blake2b(digest_size=16)
    try:
        with open(path, 'rb') as f:
            for block in iter(lambda: f.read(1 << 20), b''):
                h.update(block)
    except OSError as err:
        raise SchemaError(f'{path}: cannot read episode: {err}') from err
    return h.hexdigest()


def _stream_sizes(src: Path, frame_hw: Sequence[int]) -> list[list[int]]:
    """
    Return ``[[H, W] colour, [H, W] depth]`` as the camera sent them for episode ``src``.

    The bag converter's report next to the episode (``<stem>.json``: ``image.native_hw`` and
    ``image.depth_native_hw``) knows them; without it (or with a report that does not say) the
    episode's own frame size stands for both.
    """
    sizes = [[int(frame_hw[0]), int(frame_hw[1])]] * 2
    try:
        image = json.loads(src.with_suffix('.json').read_text()).get('image', {})
    except (OSError, ValueError, AttributeError):
        return sizes
    for i, key in enumerate(('native_hw', 'depth_native_hw')):
        hw = image.get(key) if isinstance(image, dict) else None
        if isinstance(hw, list) and len(hw) == 2 and all(isinstance(v, int) for v in hw):
            sizes[i] = [int(hw[0]), int(hw[1])]
    return sizes


@dataclass
class CachedEpisode:
    """Memory-mapped, resized arrays of one episode (stage-1 preprocessing)."""

    source: Path
    rgb: np.ndarray  # uint8 [N,3,h,w]
    depth: np.ndarray  # float32 [N,1,h,w] metres
    q: np.ndarray  # float64 [N,7]
    dq: np.ndarray  # float64 [N,7]
    stamp_ns: np.ndarray  # int64 [N]
    ee_xyz: np.ndarray  # float64 [N,3]
    joint_names: tuple[str, ...]
    #: (height, width) of the colour and depth streams as recorded (StreamGeometry)
    rgb_hw: tuple[int, int] = (0, 0)
    depth_hw: tuple[int, int] = (0, 0)

    def __len__(self) -> int:
        return int(self.q.shape[0])


def _build_cache(
    src: Path,
    dst: Path,
    resize_hw: tuple[int, int],
    crop: tuple[float, float, float, float] | None = None,
    fit: str = 'center_crop',
) -> None:
    """Validate ``src`` and write its resized arrays into the cache folder ``dst`` atomically."""
    arrays = read_arrays(src)
    check_episode(arrays, str(src))
    n = arrays['rgb'].shape[0]
    h, w = resize_hw
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{dst.name}.', dir=dst.parent))
    try:
        rgb = np.lib.format.open_memmap(tmp / 'rgb.npy', 'w+', np.uint8, (n, 3, h, w))
        depth = np.lib.format.open_memmap(tmp / 'depth.npy', 'w+', np.float32, (n, 1, h, w))
        for s in range(0, n, _CHUNK):
            e = min(n, s + _CHUNK)
            rgb[s:e], depth[s:e] = resize_frames(
                arrays['rgb'][s:e], arrays['depth'][s:e], resize_hw, crop, fit
            )
        rgb.flush()
        depth.flush()
        del rgb, depth
        np.save(tmp / 'q.npy', arrays['q'].astype(np.float64))
        np.save(tmp / 'dq.npy', arrays['dq'].astype(np.float64))
        np.save(tmp / 'stamp_ns.npy', arrays['stamp_ns'])
        np.save(tmp / 'ee_xyz.npy', arrays['ee_xyz'].astype(np.float64))
        meta = {
            'version': CACHE_VERSION,
            'source': src.name,
            'joint_names': [str(s) for s in arrays['joint_names']],
            'resize_hw': [h, w],
            'crop': None if crop is None else list(crop),
            'fit': fit,
            'num_frames': int(n),
            'source_hw': [int(v) for v in arrays['rgb'].shape[1:3]],
        }
        (tmp / 'meta.json').write_text(json.dumps(meta))
        try:
            os.replace(tmp, dst)
        except OSError:
            if not (dst / 'meta.json').exists():  # another process won the race: fine
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def open_cached_episode(
    path: Path,
    resize_hw: tuple[int, int],
    cache_dir: Path | None = None,
    crop: tuple[float, float, float, float] | None = None,
    fit: str = 'center_crop',
) -> CachedEpisode:
    """Return the cached episode for ``path``, building the cache entry on first use."""
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)
    crop_key = '' if crop is None else '_crop' + '-'.join(f'{v:.4f}' for v in crop)
    size_key = f'{resize_hw[0]}x{resize_hw[1]}{crop_key}_{fit}'
    key = f'{file_digest(path)}_{size_key}_v{CACHE_VERSION}'
    entry = cache_dir / key
    if not (entry / 'meta.json').exists():
        _build_cache(path, entry, resize_hw, crop, fit)
    meta = json.loads((entry / 'meta.json').read_text())
    rgb_hw, depth_hw = _stream_sizes(path, meta['source_hw'])
    return CachedEpisode(
        source=path,
        rgb=np.load(entry / 'rgb.npy', mmap_mode='r', allow_pickle=False),
        depth=np.load(entry / 'depth.npy', mmap_mode='r', allow_pickle=False),
        q=np.load(entry / 'q.npy', allow_pickle=False),
        dq=np.load(entry / 'dq.npy', allow_pickle=False),
        stamp_ns=np.load(entry / 'stamp_ns.npy', allow_pickle=False),
        ee_xyz=np.load(entry / 'ee_xyz.npy', allow_pickle=False),
        joint_names=tuple(meta['joint_names']),
        rgb_hw=(rgb_hw[0], rgb_hw[1]),
        depth_hw=(depth_hw[0], depth_hw[1]),
    )


class SegmentDataset(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """View of a :class:`KinovaJointDataset` whose item ``i`` is ``ds.segment(i, S)``."""

    def __init__(self, ds: 'KinovaJointDataset', num_windows: int) -> None:
        self.ds, self.num_windows = ds, num_windows

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.ds.segment(index, self.num_windows)


class KinovaJointDataset(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """
    Samples ``(observation window, future joint targets)`` from npz episodes.

    ``len()`` is the total number of frames (after ``max_episode_length``); index ``i`` runs
    episode by episode (files sorted), frame by frame. Items are dicts of float32 tensors:
    ``rgb [K,3,H,W]``, ``depth [K,1,H,W]``, ``q [K,7]``, ``dq [K,7]``, ``gt_joint [T,7]``.
    K is ``obs_horizon``, or 1 + ``obs_horizon`` with ``anchor_frame`` (the episode's frame 0
    heads every window).
    """

    def __init__(
        self,
        episodes: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        obs_horizon: int = 8,
        pred_horizon: int = 12,
        resize_hw: tuple[int, int] = (96, 128),
        max_depth_m: float = 2.0,
        normalize_depth01: bool = True,
        max_episode_length: int | None = None,
        stats: JointStats | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        with_goal: bool = False,
        crop: tuple[float, float, float, float] | None = None,
        anchor_frame: bool = False,
        goal_offset: float = 0.0,
        action_horizon: int | None = None,
        val_fraction: float = DataConfig.val_fraction,
        fit: str = DataConfig.fit,
    ) -> None:
        """
        Open (and cache) the episodes; the keywords are the :class:`DataConfig` fields.

        ``action_horizon`` (None: ``min(pred_horizon, 6)``) and ``val_fraction`` do not change
        the samples: they are kept in :attr:`cfg` (the split is the trainer's). ``with_goal``
        adds each sample's goal: where the tool point, ``goal_offset`` m along
        ``end_effector_link``'s z (``model.tcp_offset``; 0 = the recorded ``ee_xyz``), ends the
        episode.
        """
        self.with_goal = with_goal
        self.goal_offset = float(goal_offset)
        self._tool_points: dict[Path, np.ndarray] = {}  # per episode: [N,3], goal_offset > 0
        self.cfg = DataConfig(
            resize_hw=tuple(resize_hw),  # type: ignore[arg-type]
            crop=crop,
            fit=fit,
            max_depth_m=max_depth_m,
            normalize_depth01=normalize_depth01,
            max_episode_length=max_episode_length,
            obs_horizon=obs_horizon,
            anchor_frame=anchor_frame,
            pred_horizon=pred_horizon,
            action_horizon=min(pred_horizon, 6) if action_horizon is None else action_horizon,
            val_fraction=val_fraction,
        )
        self.files = list_episode_files(episodes)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self._episodes: list[CachedEpisode] | None = None
        eps = self._open_all()
        names = {e.joint_names for e in eps}
        if len(names) > 1:
            detail = ', '.join(f'{e.source.name}: {list(e.joint_names)}' for e in eps)
            raise SchemaError(f"episodes disagree on key 'joint_names': {detail}")
        self.joint_names: tuple[str, ...] = eps[0].joint_names
        self.lengths = np.array(
            [min(len(e), max_episode_length or len(e)) for e in eps], dtype=np.int64
        )
        self._ends = np.cumsum(self.lengths)  # [E]: exclusive end index of each episode
        self.stats = stats if stats is not None else self.compute_stats()
        self._q_norm = self.stats.q
        self._dq_norm = self.stats.dq

    # -- episodes -------------------------------------------------------------------------

    def _open_all(self) -> list[CachedEpisode]:
        if self._episodes is None:
            eps, problems = [], []
            for f in self.files:
                try:
                    eps.append(
                        open_cached_episode(
                            f, self.cfg.resize_hw, self.cache_dir, self.cfg.crop, self.cfg.fit
                        )
                    )
                except SchemaError as err:
                    problems.append(str(err))
            if problems:
                raise SchemaError(
                    f'{len(problems)} of {len(self.files)} episode file(s) are invalid:\n'
                    + '\n'.join(problems)
                )
            self._episodes = eps
        return self._episodes

    def __getstate__(self) -> dict[str, object]:
        # Memory maps are reopened in each DataLoader worker instead of being pickled (copied).
        state = dict(self.__dict__)
        state['_episodes'] = None
        return state

    @property
    def episodes(self) -> list[CachedEpisode]:
        return self._open_all()

    def compute_stats(self) -> JointStats:
        """Per-joint min/max of q and dq over these episodes (truncated as sampled)."""
        parts = [
            JointStats.from_arrays(e.q[:n], e.dq[:n]) for e, n in zip(self.episodes, self.lengths)
        ]
        return JointStats.merge(parts)

    def stream_geometry(self) -> StreamGeometry:
        """Return the stream sizes of these episodes and the rule that fits them (checkpoint)."""
        eps = self.episodes
        return StreamGeometry(
            rgb_hw=tuple(sorted({e.rgb_hw for e in eps})),
            depth_hw=tuple(sorted({e.depth_hw for e in eps})),
            resize_hw=self.cfg.resize_hw,
            crop=self.cfg.crop,
            fit=self.cfg.fit,
        )

    def frame_period_s(self) -> float:
        """Median frame period ``dt`` over all episodes, seconds."""
        diffs = np.concatenate(
            [np.diff(e.stamp_ns[:n]) for e, n in zip(self.episodes, self.lengths) if n > 1]
            or [np.zeros(0, np.int64)]
        )
        if diffs.size == 0:
            raise SchemaError(f'{self.files[0]}: need at least 2 frames to know the frame period')
        return float(np.median(diffs)) / 1e9

    def locate(self, index: int) -> tuple[int, int]:
        """Map a sample index to ``(episode index, frame t)``."""
        if not 0 <= index < len(self):
            raise IndexError(f'index {index} out of range for {len(self)} samples')
        ep = int(np.searchsorted(self._ends, index, side='right'))
        start = int(self._ends[ep - 1]) if ep > 0 else 0
        return ep, index - start

    def episode_of(self, indices: np.ndarray) -> NDArray[np.intp]:
        """Vectorized episode index of sample indices."""
        return np.asarray(np.searchsorted(self._ends, indices, side='right'), dtype=np.intp)

    def frame_of(self, indices: np.ndarray) -> NDArray[np.int64]:
        """Vectorized frame index ``t`` of sample indices."""
        ep = self.episode_of(indices)
        starts = np.concatenate([[0], self._ends[:-1]])
        return np.asarray(indices - starts[ep], dtype=np.int64)

    # -- samples --------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        seg = self.segment(index, 1)  # one window: its L = K frames are the window itself
        seg.pop('window_index')
        return {k: v if k in ('rgb', 'depth') else v[0] for k, v in seg.items()}

    def _goal(self, ep: CachedEpisode, n: int, t: np.ndarray) -> torch.Tensor:
        """Where the tool point ends the episode, from its position at frames t: [len(t),3]."""
        xyz = ep.ee_xyz
        if self.goal_offset:  # FK of the recorded joints, as the converter computes ee_xyz
            if ep.source not in self._tool_points:
                self._tool_points[ep.source] = kin.tool_point(ep.q, self.goal_offset)
            xyz = self._tool_points[ep.source]
        rel = (xyz[n - 1][None] - xyz[t]) * GOAL_SCALE
        return torch.from_numpy(rel.astype(np.float32))

    def segment(self, index: int, num_windows: int) -> dict[str, torch.Tensor]:
        """
        ``num_windows`` (S) consecutive samples that share their frames, for faster training.

        The windows end at frames ``t0 .. t0+S-1`` of the episode of sample ``index`` (``t0`` is
        that sample's frame, moved back so all S fit in the episode when it is long enough);
        they use the L = K+S-1 frames ``t0-K+1 .. t0+S-1`` (edge-padded like single samples).
        Window ``s`` is frames ``window_index[s]`` and equals sample ``t0+s``. With
        ``anchor_frame`` the episode's frame 0 is prepended: L = K+S, and every window (K =
        1 + obs_horizon entries) starts with index 0.

        :return: ``rgb [L,3,H,W]``, ``depth [L,1,H,W]``, ``window_index [S,K]`` (int64),
            ``q [S,K,7]``, ``dq [S,K,7]``, ``gt_joint [S,T,7]``.
        """
        ep_i, t = self.locate(int(index))
        ep = self.episodes[ep_i]
        n = int(self.lengths[ep_i])
        k, horizon, s_n = self.cfg.obs_horizon, self.cfg.pred_horizon, num_windows
        t0 = max(0, min(t, n - s_n))
        frames = np.clip(np.arange(t0 - k + 1, t0 + s_n), 0, n - 1)  # [L]
        win = np.arange(s_n)[:, None] + np.arange(k)[None, :]  # [S,K] into frames
        if self.cfg.anchor_frame:  # the episode's first frame heads every window
            frames = np.concatenate([[0], frames])  # [L] -> [1+L]
            win = np.concatenate([np.zeros((s_n, 1), np.int64), win + 1], axis=1)  # [S,1+K]
        ends = np.minimum(t0 + np.arange(s_n), n - 1)  # [S] sample frame t of each window
        fut = np.clip(ends[:, None] + 1 + np.arange(horizon)[None, :], 0, n - 1)  # [S,T]
        lo, hi = int(frames[0]), int(frames[-1]) + 1
        rgb, depth = frames_to_tensors(
            np.asarray(ep.rgb[lo:hi])[frames - lo],
            np.asarray(ep.depth[lo:hi])[frames - lo],
            self.cfg.max_depth_m,
            self.cfg.normalize_depth01,
        )
        obs = frames[win]  # [S,K] episode frame of each window slot
        item = {
            'rgb': rgb,
            'depth': depth,
            'window_index': torch.from_numpy(win),
            'q': torch.from_numpy(self._q_norm.normalize(ep.q[obs])),  # [S,K,7]
            'dq': torch.from_numpy(self._dq_norm.normalize(ep.dq[obs])),
            'gt_joint': torch.from_numpy(self._q_norm.normalize(ep.q[fut])),  # [S,T,7]
        }
        if self.with_goal:
            item['goal'] = self._goal(ep, n, ends)  # [S,3]
        return item

    @classmethod
    def from_config(
        cls,
        episodes: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        cfg: DataConfig,
        stats: JointStats | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        with_goal: bool = False,
        goal_offset: float = 0.0,
    ) -> 'KinovaJointDataset':
        """Build from a :class:`DataConfig`: every field of ``cfg`` ends up in :attr:`cfg`."""
        ds = cls(
            episodes,
            obs_horizon=cfg.obs_horizon,
            pred_horizon=cfg.pred_horizon,
            resize_hw=cfg.resize_hw,
            max_depth_m=cfg.max_depth_m,
            normalize_depth01=cfg.normalize_depth01,
            max_episode_length=cfg.max_episode_length,
            stats=stats,
            cache_dir=cache_dir,
            with_goal=with_goal,
            goal_offset=goal_offset,
            crop=cfg.crop,
            fit=cfg.fit,
            anchor_frame=cfg.anchor_frame,
            action_horizon=cfg.action_horizon,
            val_fraction=cfg.val_fraction,
        )
        lost = [f.name for f in fields(cfg) if getattr(ds.cfg, f.name) != getattr(cfg, f.name)]
        if lost:  # a DataConfig field this constructor does not take yet
            raise ConfigError(
                f'KinovaJointDataset.from_config: data.{lost[0]} is {getattr(cfg, lost[0])!r}, '
                f'the dataset would use {getattr(ds.cfg, lost[0])!r}'
            )
        return ds
