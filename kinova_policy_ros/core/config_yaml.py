"""
Config values from text: a YAML file's top-level mapping and dotted command-line overrides.

``train.num_steps=20`` sets ``values['train']['num_steps']`` to the YAML-parsed ``20``
(``data.resize_hw=[96,128]`` to a list). Nothing here knows the config's fields: unknown keys
and bad values are caught when :func:`~kinova_policy_ros.core.config_codec.from_dict` builds the
dataclasses. Part of :mod:`kinova_policy_ros.core.config`, which re-exports the override
functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import os
from pathlib import Path

from kinova_policy_ros.core.errors import ConfigError
import yaml

__all__ = ['apply_overrides', 'parse_override', 'read_yaml_mapping']


def read_yaml_mapping(path: str | os.PathLike[str]) -> dict[str, object]:
    """Return the top-level mapping of the YAML file ``path`` ({} for an empty file)."""
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ConfigError(f'{path}: cannot read config: {err}') from err
    try:
        loaded: object = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f'{path}: invalid YAML: {err}') from err
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f'{path}: expected a mapping at the top level')
    return dict(loaded or {})


def parse_override(text: str) -> tuple[list[str], object]:
    """Split ``'a.b.c=value'`` into the key path and the YAML-parsed value."""
    if '=' not in text:
        raise ConfigError(f'override {text!r}: expected dotted.key=value')
    key, raw = text.split('=', 1)
    path = key.strip().split('.')
    if not all(path):
        raise ConfigError(f'override {text!r}: empty key component')
    try:
        value: object = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise ConfigError(f'{key}: cannot parse value {raw!r} as YAML: {err}') from err
    return path, value


def apply_overrides(values: Mapping[str, object], overrides: Sequence[str]) -> dict[str, object]:
    """Apply dotted overrides to a nested dict (a copy); unknown keys are caught by from_dict."""
    out = _deep_copy(values)
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for i, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f'{".".join(path[: i + 1])}: is not a section')
            node = child
        node[path[-1]] = value
    return out


def _deep_copy(d: Mapping[str, object]) -> dict[str, object]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in d.items()}
