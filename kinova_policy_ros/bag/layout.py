r"""
What a user-given bag path holds, found by content: a rosbag2 directory, storage files, splits.

The format is never taken from a name (a rosbag2 directory may well be called ``run.bag``): a
directory is a rosbag2 recording when it has ``metadata.yaml``; a file is what its first bytes
say, SQLite (``SQLite format 3\0``, a ``.db3``), MCAP (``\x89MCAP0\r\n``), a ROS 1 bag
(``#ROSBAG V2.0``) or a zstd-compressed split. ROS 1 bags and MCAP files that are not ROS 2
recordings (another profile, protobuf / JSON channels) are refused with what they are and what
to do.

A storage file of a split recording (``<name>_0.db3``, ``<name>_1.db3``, ...) given without its
``metadata.yaml`` is read together with the sibling splits next to it; when one of the splits
before the last one found is missing, the bag is refused with the splits that exist and those
that do not, unless a partial read is allowed (``allow_partial_split``: then
:attr:`BagLayout.missing` names them and the reader warns).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import re
from typing import Literal

from kinova_policy_ros.bag.mcap_scan import check_mcap
from kinova_policy_ros.core.errors import BagError

__all__ = [
    'MCAP_MAGIC',
    'ROS1_MAGIC',
    'SQLITE_MAGIC',
    'ZSTD_MAGIC',
    'BagLayout',
    'PartialBagWarning',
    'locate',
    'ros1_error',
    'sniff',
]

SQLITE_MAGIC = b'SQLite format 3\x00'
MCAP_MAGIC = b'\x89MCAP0\r\n'
ROS1_MAGIC = b'#ROSBAG V2.0'
ZSTD_MAGIC = b'\x28\xb5\x2f\xfd'

FileFormat = Literal['sqlite3', 'mcap', 'ros1', 'zstd', 'unknown']
Storage = Literal['sqlite3', 'mcap']
_SUFFIX: dict[Storage, str] = {'sqlite3': '.db3', 'mcap': '.mcap'}
_SPLIT = re.compile(r'(?P<prefix>.+)_(?P<index>\d+)')


class PartialBagWarning(UserWarning):
    """Some splits of a recording are missing and the rest is read (``allow_partial_split``)."""


def sniff(path: Path) -> FileFormat:
    """Return the format of file ``path`` from its first bytes (``'unknown'`` if unreadable)."""
    try:
        with path.open('rb') as f:
            head = f.read(16)
    except OSError:
        return 'unknown'
    for magic, fmt in (
        (SQLITE_MAGIC, 'sqlite3'),
        (MCAP_MAGIC, 'mcap'),
        (ROS1_MAGIC, 'ros1'),
        (ZSTD_MAGIC, 'zstd'),
    ):
        if head.startswith(magic):
            return fmt  # type: ignore[return-value]
    return 'unknown'


@dataclass(frozen=True)
class BagLayout:
    """
    What to open for a bag path.

    ``open_path`` is the rosbag2 directory, or ``None`` when the storage ``files`` are opened
    directly (no ``metadata.yaml``); ``missing`` names the splits not there (a partial read).
    """

    path: Path
    open_path: Path | None
    storage: Storage
    files: tuple[Path, ...]
    missing: tuple[str, ...] = ()

    @property
    def paths(self) -> list[Path]:
        """Return the paths for the reader: the directory, or every storage file."""
        return [self.open_path] if self.open_path is not None else list(self.files)

    @property
    def name(self) -> str:
        """Name of the recording: the directory, the split set's prefix or the file's stem."""
        if self.open_path is not None:
            return self.open_path.name
        if len(self.files) > 1 or self.missing:
            match = _SPLIT.fullmatch(self.files[0].stem)
            if match:
                return match['prefix']
        return self.files[0].stem


def ros1_error(path: Path) -> BagError:
    """Return the error for a ROS 1 bag: what it is and the command that converts it."""
    dst = path.with_name(f'{path.stem}_ros2')
    return BagError(
        f'{path}: a ROS 1 bag (#ROSBAG V2.0), not a rosbag2 recording; bag_to_npz reads '
        f'rosbag2 (sqlite3 / MCAP) only. Convert it first with rosbags (installed with this '
        f'package): rosbags-convert --src {path} --dst {dst} ; then convert {dst}'
    )


def _check_storage_file(path: Path) -> Storage:
    """Return the storage of a file by content; :class:`BagError` for anything else."""
    fmt = sniff(path)
    if fmt == 'ros1':
        raise ros1_error(path)
    if fmt == 'zstd':
        raise BagError(
            f'{path}: a zstd-compressed storage file (rosbag2 --compression-mode file); it '
            f'can only be read with the metadata.yaml of its bag directory (or decompress it: '
            f'zstd -d {path.name})'
        )
    if fmt not in ('sqlite3', 'mcap'):
        raise BagError(
            f'{path}: not a rosbag2 file: its content is neither SQLite (.db3) nor MCAP, nor a '
            f'ROS 1 bag (expected a bag directory with metadata.yaml, a .db3 or a .mcap)'
        )
    storage: Storage = 'mcap' if fmt == 'mcap' else 'sqlite3'
    if path.suffix != _SUFFIX[storage]:
        raise BagError(
            f'{path}: the file holds {storage} data but is named {path.suffix or "without a "}'
            f'{"" if path.suffix else "suffix"}; rosbags picks the storage by the name: '
            f'rename it to {path.stem}{_SUFFIX[storage]}'
        )
    if storage == 'mcap':
        check_mcap(path)
    return storage


def _split_set(path: Path) -> tuple[list[Path], list[str]]:
    """Return the splits next to ``path`` (by index) and the names of those missing."""
    match = _SPLIT.fullmatch(path.stem)
    if match is None:
        return [path], []
    prefix = match['prefix']
    pattern = re.compile(re.escape(prefix) + r'_(\d+)' + re.escape(path.suffix))
    found: dict[int, Path] = {}
    for sibling in path.parent.iterdir():
        m = pattern.fullmatch(sibling.name)
        if m and sibling.is_file():
            found[int(m[1])] = sibling
    last = max(found)
    missing = [f'{prefix}_{k}{path.suffix}' for k in range(last + 1) if k not in found]
    return [found[k] for k in sorted(found)], missing


def _files_layout(path: Path, first: Path, allow_partial_split: bool) -> BagLayout:
    """Layout of a storage file without ``metadata.yaml``: it and its sibling splits."""
    storage = _check_storage_file(first)
    files, missing = _split_set(first)
    if missing and not allow_partial_split:
        raise BagError(
            f'{path}: a split recording without its metadata.yaml: splits present '
            f'{[f.name for f in files]}, missing {missing}. Copy the whole bag directory '
            f'(with metadata.yaml), or allow a partial read with --allow-partial-split '
            f'(allow_partial_split: true); if {first.name} is not a split, rename it'
        )
    for other in files:
        if other != first and _check_storage_file(other) != storage:
            raise BagError(f'{other}: a split of {first.name} with another storage format')
    return BagLayout(path, None, storage, tuple(files), tuple(missing))


def _metadata_files(directory: Path) -> tuple[Storage, list[str]]:
    """Return the storage and the storage file names ``metadata.yaml`` lists."""
    import yaml

    meta = directory / 'metadata.yaml'
    try:
        info = yaml.safe_load(meta.read_text())['rosbag2_bagfile_information']
        names = [Path(str(p)).name for p in info.get('relative_file_paths') or []]
        ident = str(info.get('storage_identifier', 'sqlite3'))
    except (OSError, ValueError, yaml.YAMLError, KeyError, TypeError, AttributeError) as err:
        # (ValueError: UnicodeDecodeError of a file that is not text)
        raise BagError(f'{meta}: not a readable rosbag2 metadata.yaml: {err!r}') from err
    return ('mcap' if ident == 'mcap' else 'sqlite3'), names


def _directory_layout(path: Path, allow_partial_split: bool) -> BagLayout:
    """Layout of a rosbag2 directory; its missing storage files are named (or read around)."""
    storage, names = _metadata_files(path)
    present = [path / n for n in names if (path / n).is_file()]
    missing = [n for n in names if not (path / n).is_file()]
    if missing:
        if not allow_partial_split or not present:
            raise BagError(
                f'{path}: metadata.yaml lists storage files that are not there: missing '
                f'{missing}, present {[p.name for p in present]}; copy them back, or allow '
                f'a partial read with --allow-partial-split (allow_partial_split: true)'
            )
        layout = _files_layout(path, present[0], True)
        return BagLayout(path, None, layout.storage, tuple(present), tuple(missing))
    for f in present:
        if sniff(f) == 'mcap':
            check_mcap(f)
    return BagLayout(path, path, storage, tuple(present))


def _bare_directory(path: Path, allow_partial_split: bool) -> BagLayout:
    """Read a directory without ``metadata.yaml``: the one split set of storage files it has."""
    entries = sorted(path.iterdir())
    kinds = {p: sniff(p) for p in entries if p.is_file()}
    ros1 = [p for p, k in kinds.items() if k == 'ros1']
    if ros1:
        raise ros1_error(ros1[0])
    storage_files = [p for p, k in kinds.items() if k in ('sqlite3', 'mcap')]
    if not storage_files:
        files = [x.name for x in entries][:10]
        raise BagError(f'{path}: not a rosbag2 directory (no metadata.yaml; contains {files})')
    layout = _files_layout(path, storage_files[0], allow_partial_split)
    others = sorted(set(storage_files) - set(layout.files))
    if others:
        raise BagError(
            f'{path}: no metadata.yaml and storage files of more than one recording: '
            f'{[p.name for p in layout.files]} and {[p.name for p in others]}; pass one file'
        )
    return layout


def locate(path: str | Path, *, allow_partial_split: bool = False) -> BagLayout:
    """
    Find, by content, what to read for ``path`` (a directory or a storage file).

    Raises :class:`BagError` naming the path for what is not a readable rosbag2 recording: no
    such path, a ROS 1 bag, a non-ROS MCAP, unknown content, missing splits.
    """
    p = Path(path)
    if not p.exists():
        raise BagError(f'{p}: bag does not exist')
    if p.is_dir():
        if (p / 'metadata.yaml').is_file():
            return _directory_layout(p, allow_partial_split)
        return _bare_directory(p, allow_partial_split)
    if (p.parent / 'metadata.yaml').is_file():
        _, names = _metadata_files(p.parent)
        if p.name in names:
            return _directory_layout(p.parent, allow_partial_split)
    return _files_layout(p, p, allow_partial_split)
