"""
Convert rosbag2 recordings of teleoperated demonstrations to npz episodes (docs/recording.md).

``python -m kinova_policy_ros.bag.cli BAG [BAG ...] --out DIR`` (console script
``bag_to_npz``). The RGB stream is the clock: depth is matched to the nearest frame within a
tolerance, joint states are interpolated at each RGB stamp and mapped by name, the end-effector
pose comes from ``/tf`` when the bag has it and from Gen3 forward kinematics otherwise.

Bags are streamed: images are decoded one message at a time straight into the output arrays (or,
for an uncompressed episode, into the output file while the bag is read), so memory holds at most
the episode being built, not the bag. Several bags convert in parallel (spawn process pool); a
failure in one bag is reported and the others still convert.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from concurrent.futures import as_completed, ProcessPoolExecutor
import ctypes
from dataclasses import dataclass, field, fields, replace
import multiprocessing
from pathlib import Path
import sys
import types
import typing
from typing import Any, Literal
import warnings

from kinova_policy_ros.bag.convert import convert_bag, ConvertOptions, output_stem
from kinova_policy_ros.bag.layout import PartialBagWarning
from kinova_policy_ros.bag.report import BagReport, dropped_total
from kinova_policy_ros.core.errors import ConfigError, KinovaPolicyError

__all__ = [
    'BagResult',
    'ConvertOptions',
    'build_parser',
    'convert_bags',
    'default_config_path',
    'load_options',
    'main',
    'reuse_freed_memory',
]

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def default_config_path() -> Path | None:
    """Return ``config/bag_to_npz.yaml`` of the source tree or the installed share directory."""
    here = Path(__file__).resolve().parents[2] / 'config' / 'bag_to_npz.yaml'
    if here.exists():
        return here
    try:
        from ament_index_python.packages import get_package_share_directory

        shared = Path(get_package_share_directory('kinova_policy_ros')) / 'config'
    except Exception:
        return None
    shared /= 'bag_to_npz.yaml'
    return shared if shared.exists() else None


#: Checks of an option's value beyond its declared type: name -> (predicate, what it must be).
_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    'joint_names': (lambda v: len(v) == 7 and len(set(v)) == 7, '7 distinct joint names'),
    'resize': (lambda v: v[0] > 0 and v[1] > 0, 'a positive height and width'),
    'depth_tolerance_s': (lambda v: v > 0, '> 0'),
    'max_joint_gap_s': (lambda v: v > 0, '> 0'),
    'split_on_gap_s': (lambda v: v > 0, '> 0'),
    'workers': (lambda v: v >= 1, '>= 1'),
    'min_frames': (lambda v: v >= 1, '>= 1'),
}


def _option_types() -> dict[str, Any]:
    """Return the declared type of every ConvertOptions field (annotations resolved)."""
    return typing.get_type_hints(ConvertOptions)


def _to_bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError('expected true or false')
    return value


def _to_int(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError('expected an integer, got a boolean')
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ValueError('expected an integer')


def _to_float(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError('expected a number, got a boolean')
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise ValueError('expected a number')


def _to_str(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f'expected a string, got {type(value).__name__}')
    return value


def _to_tuple(args: tuple[Any, ...], value: object) -> tuple[Any, ...]:
    """Convert a list, or a string split at ``,`` (``x`` for numbers), to ``tuple[args]``."""
    variadic = len(args) == 2 and args[1] is Ellipsis
    numeric = all(a in (int, float) for a in args if a is not Ellipsis)
    if isinstance(value, str):
        items: list[object] = list(value.lower().split('x') if numeric else value.split(','))
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ValueError(f'expected a list or a string, got {type(value).__name__}')
    stripped = [p.strip() if isinstance(p, str) else p for p in items]
    parts = [p for p in stripped if p != '']
    if variadic:
        return tuple(_to_type(args[0], p) for p in parts)
    if len(parts) != len(args):
        shape = 'x'.join(['N'] * len(args)) if numeric else ','.join(['V'] * len(args))
        raise ValueError(f'expected {len(args)} values ({shape}), got {len(parts)}')
    return tuple(_to_type(a, p) for a, p in zip(args, parts))


def _to_type(hint: Any, value: object) -> Any:
    """Convert ``value`` to the declared type ``hint``; ValueError / TypeError if it is not one."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
        else:
            kinds = [a for a in args if a is not type(None)]
            if len(kinds) == 1:
                return _to_type(kinds[0], value)
        raise TypeError(f'cannot convert to {hint}')
    if value is None:
        raise ValueError('a value is required (null is not allowed here)')
    if origin is Literal:
        if value not in args:
            raise ValueError(f'expected one of {", ".join(repr(a) for a in args)}')
        return value
    if origin is tuple:
        return _to_tuple(args, value)
    converters: dict[Any, Callable[[object], Any]] = {
        bool: _to_bool,
        int: _to_int,
        float: _to_float,
        str: _to_str,
    }
    if hint not in converters:
        raise TypeError(f'no conversion to {hint}')
    return converters[hint](value)


def _coerce(name: str, value: object, where: str) -> Any:
    """
    Convert a YAML / command-line value to the declared type of ConvertOptions field ``name``.

    Raises :class:`ConfigError` naming ``where`` (the file or the command line), the option and
    the value for an unknown option, a value of the wrong type or one out of range.
    """
    hints = _option_types()
    if name not in hints:
        raise ConfigError(f'{where}: unknown option {name!r} (known: {sorted(hints)})')
    try:
        out = _to_type(hints[name], value)
        check = _CHECKS.get(name)
        if out is not None and check is not None and not check[0](out):
            raise ValueError(f'must be {check[1]}')
    except (TypeError, ValueError) as err:
        raise ConfigError(f'{where}: option {name!r} = {value!r}: {err}') from err
    return out


def load_options(config: str | Path | None = None, **overrides: Any) -> ConvertOptions:
    """
    Build options from a YAML file (default :func:`default_config_path`) and overrides.

    Unknown keys are a :class:`ConfigError` naming the key; ``None`` overrides are ignored.
    """
    import yaml

    values: dict[str, Any] = {}
    path = Path(config) if config is not None else default_config_path()
    names = {f.name for f in fields(ConvertOptions)}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f'{path}: cannot read converter config: {err}') from err
        if not isinstance(loaded, dict):
            raise ConfigError(
                f'{path}: expected a mapping of options, got {type(loaded).__name__}'
            )
        for key, value in loaded.items():
            if key not in names:
                raise ConfigError(f'{path}: unknown option {key!r} (known: {sorted(names)})')
            values[key] = _coerce(key, value, str(path))
    for key, value in overrides.items():
        if key not in names:
            raise ConfigError(f'unknown option {key!r}')
        if value is not None:
            values[key] = _coerce(key, value, 'command line')
    return replace(ConvertOptions(), **values)


@dataclass
class BagResult:
    """Outcome of one bag: the written files and report, or the error."""

    bag: str
    ok: bool
    outputs: list[str] = field(default_factory=list)
    report: BagReport | None = None  # None when the bag failed
    error: str = ''
    warnings: list[str] = field(default_factory=list)  # e.g. a partial split recording


def reuse_freed_memory() -> bool:
    """
    Make this process's malloc keep freed message- and frame-sized blocks for reuse (glibc).

    A conversion allocates and frees a buffer per message and per decoded frame (~1-2 MB each at
    640x480). By default glibc serves such blocks with ``mmap`` or trims them off the heap when
    freed, so nearly every message lands on fresh pages, each faulted in and zeroed by the kernel
    (slow in VMs, where the host may have to back them again). With the ``mmap`` threshold at
    32 MiB and trimming at 1 GiB they are reused from the heap; memory does not grow past the
    largest working set. The converter's own processes (``main`` and the worker pool) call this;
    returns False where the C library has no ``mallopt`` (then nothing changes).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, 32 << 20)) and bool(
        mallopt(_M_TRIM_THRESHOLD, 1 << 30)
    )


def _convert_job(bag: str, out_dir: str, options: ConvertOptions, position: int) -> BagResult:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always', PartialBagWarning)
        try:
            outputs, report = convert_bag(bag, out_dir, options, position=position)
        except KinovaPolicyError as err:
            return BagResult(bag, False, error=str(err))
        except Exception as err:
            return BagResult(bag, False, error=f'{bag}: unexpected {type(err).__name__}: {err}')
    said = [str(w.message) for w in caught if issubclass(w.category, PartialBagWarning)]
    return BagResult(bag, True, [str(p) for p in outputs], report, warnings=said)


def convert_bags(
    bags: Sequence[str | Path], out_dir: str | Path, options: ConvertOptions
) -> list[BagResult]:
    """Convert every bag (in parallel when ``options.workers > 1``); never raises for a bag."""
    bag_list = [str(b) for b in bags]
    results: dict[int, BagResult] = {}
    stems: dict[str, int] = {}
    todo: list[int] = []
    for i, bag in enumerate(bag_list):
        stem = output_stem(bag)
        if stem in stems:
            results[i] = BagResult(
                bag,
                False,
                error=f'{bag}: output name {stem!r} is also the name of '
                f'{bag_list[stems[stem]]}; rename one of them',
            )
        else:
            stems[stem] = i
            todo.append(i)
    workers = min(options.workers, len(todo))
    if workers <= 1:
        for i in todo:
            results[i] = _convert_job(bag_list[i], str(out_dir), options, 0)
    else:
        ctx = multiprocessing.get_context('spawn')
        with ProcessPoolExecutor(
            max_workers=workers, mp_context=ctx, initializer=reuse_freed_memory
        ) as pool:
            futures = {
                pool.submit(_convert_job, bag_list[i], str(out_dir), options, k % workers): i
                for k, i in enumerate(todo)
            }
            for fut in as_completed(futures):
                i = futures[fut]
                try:
                    results[i] = fut.result()
                except Exception as err:
                    results[i] = BagResult(
                        bag_list[i], False, error=f'{bag_list[i]}: worker failed: {err!r}'
                    )
    return [results[i] for i in range(len(bag_list))]


def summary_table(results: Sequence[BagResult]) -> str:
    """Return a plain-text table: one row per bag (status, frames, time span, outputs/error)."""
    rows = [('bag', 'status', 'episodes', 'kept', 'dropped', 'span s', 'rate Hz', 'output')]
    for r in results:
        if r.ok and r.report is not None:
            frames, time = r.report['frames'], r.report['time']
            rows.append(
                (
                    Path(r.bag).name,
                    'ok',
                    str(len(r.outputs)),
                    str(frames['kept']),
                    str(dropped_total(frames['dropped'])),
                    f'{time["duration_s"]:.2f}',
                    f'{time["rate_hz"]:.1f}',
                    ', '.join(Path(o).name for o in r.outputs),
                )
            )
        else:
            rows.append((Path(r.bag).name, 'FAILED', '0', '', '', '', '', r.error))
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(w) for cell, w in zip(row, widths)]
        lines.append('  '.join([*cells, row[-1]]))
    return '\n'.join(lines)


def build_parser() -> argparse.ArgumentParser:
    d = ConvertOptions()
    p = argparse.ArgumentParser(
        prog='bag_to_npz',
        description='Convert rosbag2 recordings (.db3 / .mcap directories or files) of Kinova '
        'Gen3 demonstrations to npz episodes. Option defaults come from config/bag_to_npz.yaml.',
    )
    p.add_argument('bags', nargs='+', metavar='BAG', help='rosbag2 directory or storage file')
    p.add_argument('--out', required=True, help='output directory for the .npz and .json files')
    p.add_argument('--config', help='YAML file of option defaults')
    add = p.add_argument
    add('--rgb-topic', help=f'Image or CompressedImage topic ({d.rgb_topic})')
    add('--depth-topic', help=f'depth Image or compressedDepth topic ({d.depth_topic})')
    add('--joint-states-topic', help=f'({d.joint_states_topic})')
    add('--camera-info-topic', help=f'CameraInfo of the RGB image ({d.camera_info_topic})')
    add('--tf-topic', help=f'({d.tf_topic})')
    add('--tf-static-topic', help=f'({d.tf_static_topic})')
    add('--joint-names', help='7 comma-separated arm joint names (joint_1,...,joint_7)')
    add('--base-frame', help=f'TF base frame ({d.base_frame})')
    add('--ee-frame', help=f'TF end-effector frame ({d.ee_frame})')
    add('--resize', metavar='HxW', help='resize images (K scaled accordingly), e.g. 240x320')
    add('--depth-tolerance-s', type=float, help='max |depth - rgb| stamp offset (half a period)')
    add('--max-joint-gap-s', type=float, help=f'max joint_states gap ({d.max_joint_gap_s})')
    add('--stamp', choices=('header', 'bag'), help='header.stamp (bag time if zero) or bag time')
    add(
        '--split-on-gap',
        dest='split_on_gap_s',
        type=float,
        metavar='S',
        help='one episode per segment without a gap longer than S seconds',
    )
    add('--min-frames', type=int, help=f'skip episodes shorter than this ({d.min_frames})')
    add('--workers', type=int, help='bags converted in parallel')
    add('--overwrite', action='store_true', default=None, help='replace existing outputs')
    add(
        '--allow-missing-camera-info',
        action='store_true',
        default=None,
        help='write zero intrinsics when the bag has no CameraInfo',
    )
    add(
        '--allow-partial-split',
        action='store_true',
        default=None,
        help='convert the splits that are there when some of a split recording are missing',
    )
    add(
        '--compress',
        action=argparse.BooleanOptionalAction,
        default=None,
        help='zip-deflate the npz (smaller, slower)',
    )
    add(
        '--no-progress',
        dest='progress',
        action='store_false',
        default=None,
        help='no progress bars',
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return 0 when every bag converted, 1 otherwise (2: bad usage)."""
    args = vars(build_parser().parse_args(argv))
    bags, out, config = args.pop('bags'), args.pop('out'), args.pop('config')
    try:
        options = load_options(config, **args)
    except ConfigError as err:
        print(f'bag_to_npz: error: {err}', file=sys.stderr)
        return 2
    reuse_freed_memory()
    results = convert_bags(bags, out, options)
    print(summary_table(results))
    for r in results:
        for said in r.warnings:
            print(f'bag_to_npz: warning: {said}', file=sys.stderr)
    failed = [r for r in results if not r.ok]
    for r in failed:
        print(f'bag_to_npz: error: {r.error}', file=sys.stderr)
    if failed:
        print(f'bag_to_npz: {len(failed)} of {len(results)} bags failed', file=sys.stderr)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
