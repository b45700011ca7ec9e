"""
The npz episode schema: one file is one demonstration episode.

This module is the one owner of the format (docs/data.md). It validates a mapping of arrays (keys,
dtypes, shapes, equal lengths, finite values, strictly increasing stamps), loads files and
writes them atomically (temp file in the same folder, then ``os.replace``), so a reader never
sees a half-written episode.
"""

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
import os
from pathlib import Path
import secrets
from typing import TypeAlias
import zipfile
import zlib

from kinova_policy_ros.core.errors import SchemaError
from kinova_policy_ros.data.npz_writer import FrameStream, write_npz
import numpy as np
from numpy.typing import ArrayLike

NUM_JOINTS = 7
DEFAULT_JOINT_NAMES: tuple[str, ...] = tuple(f'joint_{i}' for i in range(1, NUM_JOINTS + 1))

#: Every key an episode file holds, in the documented order (docs/data.md).
EPISODE_KEYS: tuple[str, ...] = (
    'stamp_ns',
    'rgb',
    'depth',
    'q',
    'dq',
    'ee_xyz',
    'ee_rpy',
    'joint_names',
    'camera_K',
    'camera_D',
    'camera_width',
    'camera_height',
)

#: Per-frame keys: their first axis is the frame index and must agree.
FRAME_KEYS: tuple[str, ...] = ('stamp_ns', 'rgb', 'depth', 'q', 'dq', 'ee_xyz', 'ee_rpy')

_FLOAT_KEYS = ('q', 'dq', 'ee_xyz', 'ee_rpy')


@dataclass(frozen=True)
class Episode:
    """One episode, arrays in the npz layout of docs/data.md (N frames of H×W images)."""

    stamp_ns: np.ndarray  # [N] int64, strictly increasing capture times
    rgb: np.ndarray  # [N, H, W, 3] uint8, RGB order
    depth: np.ndarray  # [N, H, W] float32, metres, 0 = invalid
    q: np.ndarray  # [N, 7] rad, joint_names order
    dq: np.ndarray  # [N, 7] rad/s
    ee_xyz: np.ndarray  # [N, 3] m, base frame
    ee_rpy: np.ndarray  # [N, 3] rad
    joint_names: tuple[str, ...]
    camera_K: np.ndarray  # [3, 3] float64
    camera_D: np.ndarray  # [k] float64
    camera_width: int
    camera_height: int

    @property
    def num_frames(self) -> int:
        return int(self.stamp_ns.shape[0])

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Return the npz payload: every key of :data:`EPISODE_KEYS` as a numpy array."""
        out: dict[str, np.ndarray] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == 'joint_names':
                out[f.name] = np.asarray(list(value), dtype=np.str_)
            elif f.name in ('camera_width', 'camera_height'):
                out[f.name] = np.asarray(value, dtype=np.int64)
            else:
                out[f.name] = np.asarray(value)
        return out


def _shape(arr: np.ndarray) -> str:
    return '[' + ','.join(str(d) for d in arr.shape) + ']'


# float32 bit patterns below this are +0.0 ... the largest finite float: sign 0, exponent < 255
_FLOAT32_INF_BITS = 0x7F800000


def _depth_problem(depth: np.ndarray) -> str | None:
    """
    Return what is wrong with the values of a float32 depth array, or None.

    Valid depth is the common case and is proved in one integer pass: a float32 is finite and
    non-negative exactly when its bits, read as uint32, are below ``0x7F800000`` (no sign bit,
    exponent not all ones). Only otherwise (-0.0 too, which is valid) are min and max taken (NaN
    propagates through both, inf shows as an extreme); no pass makes a frame-sized temporary.
    """
    if depth.size == 0 or int(depth.view(np.uint32).max()) < _FLOAT32_INF_BITS:
        return None
    lo, hi = float(depth.min()), float(depth.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return 'contains NaN or inf (invalid depth must be 0)'
    if lo < 0:
        return 'contains negative depth'
    return None


#: Receives each problem found: ``(key, what is wrong)``.
_Report: TypeAlias = Callable[[str, str], None]


def validate_episode(
    arrays: Mapping[str, ArrayLike],
    source: str = '<memory>',
    *,
    values_checked: Iterable[str] = (),
) -> list[str]:
    """
    Check a mapping of arrays against the schema.

    :param arrays: the npz content (``np.load`` result or a dict).
    :param source: the file name used in every message.
    :param values_checked: per-frame keys whose values were checked elsewhere (a frame stream
        checks what it writes); only their shape and dtype are checked here.
    :return: a list of problems, each naming the source and the key; empty when valid.
    """
    problems: list[str] = []

    def bad(key: str, what: str) -> None:
        problems.append(f'{source}: key {key!r}: {what}')

    missing = [k for k in EPISODE_KEYS if k not in arrays]
    for key in missing:
        bad(key, 'missing')
    unknown = sorted(set(arrays.keys()) - set(EPISODE_KEYS))
    for key in unknown:
        bad(key, 'unknown key (not in the episode schema)')
    if missing:
        return problems
    a = {k: np.asarray(arrays[k]) for k in EPISODE_KEYS}
    n = _check_stamps(a['stamp_ns'], bad)
    if n is None:
        return problems
    _check_images(a['rgb'], a['depth'], 'depth' not in frozenset(values_checked), bad)
    _check_joint_arrays(a, bad)
    for key in FRAME_KEYS:
        if a[key].ndim >= 1 and a[key].shape[0] != n:
            bad(key, f'has {a[key].shape[0]} frames, stamp_ns has {n}')
    _check_joint_names(a['joint_names'], bad)
    _check_camera(a, bad)
    return problems


def _check_stamps(stamp: np.ndarray, bad: _Report) -> int | None:
    """Check ``stamp_ns``; return the frame count, None when the shape is unusable."""
    if stamp.ndim != 1:
        bad('stamp_ns', f'expected shape [N], got {_shape(stamp)}')
        return None
    n = int(stamp.shape[0])
    if n == 0:
        bad('stamp_ns', 'episode has no frames')
    if stamp.dtype != np.int64:
        bad('stamp_ns', f'expected dtype int64 (nanoseconds), got {stamp.dtype}')
    elif n > 1:
        steps = np.diff(stamp)
        if np.any(steps <= 0):
            i = int(np.argmax(steps <= 0))
            bad(
                'stamp_ns',
                f'not strictly increasing at frame {i + 1} ({stamp[i]} -> {stamp[i + 1]})',
            )
    return n


def _check_images(rgb: np.ndarray, depth: np.ndarray, depth_values: bool, bad: _Report) -> None:
    """Check ``rgb`` and ``depth`` (the depth values too unless ``depth_values`` is False)."""
    if rgb.ndim != 4 or rgb.shape[-1] != 3:
        bad('rgb', f'expected shape [N,H,W,3], got {_shape(rgb)}')
    elif rgb.dtype != np.uint8:
        bad('rgb', f'expected dtype uint8, got {rgb.dtype}')
    if depth.ndim != 3:
        bad('depth', f'expected shape [N,H,W], got {_shape(depth)}')
        return
    if depth.dtype != np.float32:
        bad('depth', f'expected dtype float32 (metres), got {depth.dtype}')
    elif depth_values and (problem := _depth_problem(depth)) is not None:
        bad('depth', problem)
    if rgb.ndim == 4 and depth.shape[1:] != rgb.shape[1:3]:
        bad('depth', f'image size {depth.shape[1:]} differs from rgb {rgb.shape[1:3]}')


def _check_joint_arrays(a: Mapping[str, np.ndarray], bad: _Report) -> None:
    """Check the float arrays ``q``, ``dq``, ``ee_xyz`` and ``ee_rpy``."""
    widths = {'q': NUM_JOINTS, 'dq': NUM_JOINTS, 'ee_xyz': 3, 'ee_rpy': 3}
    for key in _FLOAT_KEYS:
        arr = a[key]
        if arr.ndim != 2 or arr.shape[1] != widths[key]:
            bad(key, f'expected shape [N,{widths[key]}], got {_shape(arr)}')
        elif arr.dtype not in (np.float32, np.float64):
            bad(key, f'expected dtype float32 or float64, got {arr.dtype}')
        elif not np.all(np.isfinite(arr)):
            bad(key, 'contains NaN or inf')


def _check_joint_names(names: np.ndarray, bad: _Report) -> None:
    if names.shape != (NUM_JOINTS,) or names.dtype.kind not in ('U', 'S', 'O'):
        bad('joint_names', f'expected {NUM_JOINTS} strings, got {_shape(names)} {names.dtype}')
    elif len({str(s) for s in names}) != NUM_JOINTS:
        bad('joint_names', f'names must be unique, got {[str(s) for s in names]}')


def _check_camera(a: Mapping[str, np.ndarray], bad: _Report) -> None:
    """Check the intrinsics ``camera_K``, ``camera_D`` and the image size."""
    cam_k = a['camera_K']
    if cam_k.shape != (3, 3):
        bad('camera_K', f'expected shape [3,3], got {_shape(cam_k)}')
    elif cam_k.dtype.kind != 'f' or not np.all(np.isfinite(cam_k)):
        bad('camera_K', 'expected finite floats')
    cam_d = a['camera_D']
    if cam_d.ndim != 1:
        bad('camera_D', f'expected shape [k], got {_shape(cam_d)}')
    elif cam_d.dtype.kind != 'f' or not np.all(np.isfinite(cam_d)):
        bad('camera_D', 'expected finite floats')
    for key in ('camera_width', 'camera_height'):
        v = a[key]
        if v.shape != () or v.dtype.kind not in ('i', 'u') or int(v) <= 0:
            bad(key, f'expected a positive integer scalar, got {v!r}')


def check_episode(arrays: Mapping[str, ArrayLike], source: str = '<memory>') -> None:
    """Raise :class:`SchemaError` listing every problem of ``arrays`` (see validate_episode)."""
    _raise_problems(validate_episode(arrays, source))


def _raise_problems(problems: Sequence[str]) -> None:
    if problems:
        raise SchemaError('invalid episode:\n  ' + '\n  '.join(problems))


def _from_arrays(a: Mapping[str, np.ndarray]) -> Episode:
    return Episode(
        stamp_ns=a['stamp_ns'],
        rgb=a['rgb'],
        depth=a['depth'],
        q=a['q'],
        dq=a['dq'],
        ee_xyz=a['ee_xyz'],
        ee_rpy=a['ee_rpy'],
        joint_names=tuple(str(s) for s in a['joint_names']),
        camera_K=np.asarray(a['camera_K'], dtype=np.float64),
        camera_D=np.asarray(a['camera_D'], dtype=np.float64),
        camera_width=int(a['camera_width']),
        camera_height=int(a['camera_height']),
    )


# What reading a corrupt file raises: I/O, a bad zip or npy header, a truncated member, a
# corrupt deflate stream, a corrupt compression-method field of a zip member.
_UNREADABLE: tuple[type[Exception], ...] = (
    OSError,
    ValueError,
    EOFError,
    zipfile.BadZipFile,
    zlib.error,
    NotImplementedError,
)


def read_arrays(
    path: str | os.PathLike[str], keys: Iterable[str] | None = None
) -> dict[str, np.ndarray]:
    """Read (a subset of) the arrays of an npz file, wrapping I/O errors with the path."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            wanted = list(z.files) if keys is None else list(keys)
            missing = [k for k in wanted if k not in z.files]
            if missing:
                raise SchemaError(f'{path}: key {missing[0]!r}: missing')
            return {k: z[k] for k in wanted}
    except SchemaError:
        raise
    except _UNREADABLE as err:
        raise SchemaError(f'{path}: cannot read npz episode: {err}') from err


def load_episode(path: str | os.PathLike[str]) -> Episode:
    """Load and validate one episode file; raise :class:`SchemaError` naming file and key."""
    arrays = read_arrays(path)
    check_episode(arrays, str(path))
    return _from_arrays(arrays)


def validate_files(paths: Sequence[str | os.PathLike[str]]) -> None:
    """Validate several files, raising one :class:`SchemaError` that lists every bad file."""
    problems: list[str] = []
    for p in paths:
        try:
            problems += validate_episode(read_arrays(p), str(p))
        except SchemaError as err:
            problems.append(str(err))
    if problems:
        raise SchemaError(
            f'{len(problems)} problem(s) in {len(paths)} episode file(s):\n  '
            + '\n  '.join(problems)
        )


def _temp_path(path: Path) -> Path:
    """
    Return a new, not yet existing temp name next to ``path``, for the writer to create.

    (Not ``mkstemp``: re-opening its empty file with ``'wb'`` truncates it, and on ext4 a file
    truncated to zero gets its data flushed on ``close`` -- 0.08 s for a 320 MB episode.)
    """
    return path.parent / f'.{path.name}.{secrets.token_hex(8)}.tmp'


def _refuse_existing(path: Path, overwrite: bool) -> None:
    if not overwrite and path.exists():
        raise SchemaError(f'{path}: exists (use overwrite to replace it)')


def atomic_write(
    path: str | os.PathLike[str], write: Callable[[Path], object], *, overwrite: bool = True
) -> Path:
    """
    Write a file atomically: ``write(tmp_path)`` fills a temp file, then it replaces ``path``.

    A failure leaves no partial output (the temp file is removed).
    """
    path = Path(path)
    _refuse_existing(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def open_frame_stream(
    path: str | os.PathLike[str], sources: Mapping[str, np.ndarray]
) -> FrameStream:
    """
    Start an uncompressed episode file whose per-frame arrays are written as they arrive.

    The data goes to a temp file next to ``path``; :func:`save_episode` with ``stream=`` validates
    the episode and renames it into place, anything else must :meth:`FrameStream.abort` it. The
    values of the streamed frames are validated as they are written (on the writer thread), so
    the frames need not stay in ``sources``: frames given to :meth:`FrameStream.put` leave their
    slot untouched.
    """
    unknown = sorted(set(sources) - set(FRAME_KEYS))
    if unknown:
        raise SchemaError(f'{path}: {unknown} are not per-frame keys {list(FRAME_KEYS)}')
    target = Path(path)
    checks = {'depth': _depth_problem} if 'depth' in sources else {}
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        return FrameStream(_temp_path(target), sources, checks)
    except OSError as err:
        raise SchemaError(f'{path}: cannot write episode: {err}') from err


def save_episode(
    path: str | os.PathLike[str],
    episode: Episode | Mapping[str, ArrayLike],
    *,
    compress: bool = True,
    overwrite: bool = False,
    stream: FrameStream | None = None,
) -> Path:
    """
    Validate ``episode`` and write it to ``path`` atomically.

    :param compress: ``np.savez_compressed`` (smaller) or stored members (faster to write and
        load; :func:`kinova_policy_ros.data.npz_writer.write_npz`, the format ``np.savez`` writes).
    :param overwrite: replace an existing file; otherwise an existing file is an error.
    :param stream: the :func:`open_frame_stream` that already holds the episode's per-frame
        arrays (all frames put, the same data as ``episode``'s); it is finished and renamed to
        ``path``, or deleted when anything fails.
    """
    if isinstance(episode, Episode):
        arrays = episode.to_arrays()
    else:
        arrays = {k: np.asarray(v) for k, v in episode.items()}
    if stream is None:
        check_episode(arrays, str(path))

        def write(tmp: Path) -> None:
            with open(tmp, 'wb') as f:
                if compress:
                    # the keys are the schema's (checked): none is savez's own allow_pickle
                    np.savez_compressed(f, **arrays)  # type: ignore[arg-type]
                else:
                    write_npz(f, arrays)

        try:
            return atomic_write(path, write, overwrite=overwrite)
        except OSError as err:
            raise SchemaError(f'{path}: cannot write episode: {err}') from err
    target = Path(path)
    try:
        if compress:
            raise SchemaError(f'{path}: a frame stream writes uncompressed files only')
        # checked while the writer thread finishes the last frames (the streamed members only
        # for shape and dtype: the writer checked their values); a writer error is reported
        # first (the arrays may be fine, the file is not)
        problems = validate_episode(arrays, str(path), values_checked=stream.keys)
        stream.wait()
        problems += [f'{path}: key {k!r}: {p}' for k, p in stream.problems.items()]
        _raise_problems(problems)
        _refuse_existing(target, overwrite)
        for key in stream.keys:
            if arrays[key].shape != stream.shape(key):
                raise SchemaError(
                    f'{path}: key {key!r} has shape {arrays[key].shape}, the stream holds '
                    f'{stream.shape(key)}'
                )
        stream.finish({k: v for k, v in arrays.items() if k not in stream.keys})
        os.replace(stream.path, target)
    except (OSError, ValueError) as err:
        stream.abort()
        raise SchemaError(f'{path}: cannot write episode: {err}') from err
    except BaseException:
        stream.abort()
        raise
    return target
