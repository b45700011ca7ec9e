"""
Config dataclasses to and from plain values: ``from_dict`` checks types, ``to_dict`` serializes.

``from_dict`` builds a (nested) config dataclass from a mapping of YAML/JSON values, converting
each value to the field's annotated type and rejecting unknown keys and wrong types with a
:class:`ConfigError` that names the dotted key and the value. ``to_dict`` is its inverse: a plain,
YAML/JSON-serializable dict (tuples become lists). Part of :mod:`kinova_policy_ros.core.config`,
which re-exports both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import dataclasses
import types
import typing
from typing import TYPE_CHECKING, TypeAlias, TypeVar, Union

from kinova_policy_ros.core.errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = ['PlainValue', 'from_dict', 'to_dict']

#: A config value as YAML and JSON write it.
PlainValue: TypeAlias = Union[
    bool, int, float, str, list['PlainValue'], dict[str, 'PlainValue'], None
]

T = TypeVar('T', bound='DataclassInstance')


def _convert_scalar(value: object, tp: type, key: str) -> object:
    """Convert a YAML scalar to ``bool``, ``int``, ``float`` or ``str`` (``tp``)."""
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f'{key}: expected true/false, got {value!r}')
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f'{key}: expected an integer, got {value!r}')
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads '1e-3' (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f'{key}: expected a number, got {value!r}')
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f'{key}: expected a string, got {value!r}')
        return value
    raise ConfigError(f'{key}: unsupported field type {tp!r}')  # pragma: no cover


def _convert(value: object, tp: object, key: str) -> object:
    """Convert a YAML value to the annotated type ``tp``, raising ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], key)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f'{key}: expected a mapping, got {value!r}')
        return from_dict(tp, value, prefix=key)
    if origin is tuple:
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise ConfigError(f'{key}: expected a list, got {value!r}')
        elem = args[0]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, elem, f'{key}[{i}]') for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f'{key}: expected {len(args)} values, got {value!r}')
        return tuple(_convert(v, a, f'{key}[{i}]') for i, (v, a) in enumerate(zip(value, args)))
    if isinstance(tp, type):
        return _convert_scalar(value, tp, key)
    raise ConfigError(f'{key}: unsupported field type {tp!r}')  # pragma: no cover


def from_dict(cls: type[T], values: Mapping[str, object], prefix: str = '') -> T:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys (named with ``prefix``)."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    dotted = f'{prefix}.' if prefix else ''
    for key in values:
        if key not in names:
            raise ConfigError(f'{dotted}{key}: unknown key (known: {", ".join(sorted(names))})')
    kwargs = {k: _convert(v, hints[k], f'{dotted}{k}') for k, v in values.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f'{prefix or cls.__name__}: {err}') from err


def _plain(value: object) -> PlainValue:
    if isinstance(value, tuple | list):
        return [_plain(x) for x in value]
    if isinstance(value, dict):
        return {str(k): _plain(x) for k, x in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise ConfigError(f'to_dict: {value!r} is not a plain config value')


def to_dict(cfg: DataclassInstance) -> dict[str, PlainValue]:
    """Return a plain, YAML/JSON-serializable dict (tuples become lists)."""
    return {k: _plain(v) for k, v in dataclasses.asdict(cfg).items()}
