"""The shared checks of the configuration dataclasses (core/config_checks.py)."""

from types import SimpleNamespace

from kinova_policy_ros.core.config_checks import at_most, MAX_WIDTH, require
from kinova_policy_ros.core.errors import ConfigError
import pytest


def test_require_names_the_key_and_the_value():
    require(True, 'model.d_model', 0, 'must be >= 1')  # no error
    with pytest.raises(ConfigError, match=r'^model\.d_model: must be >= 1, got 0$'):
        require(False, 'model.d_model', 0, 'must be >= 1')
    with pytest.raises(ConfigError, match=r"got 'x'$"):
        require(False, 'data.fit', 'x', 'must be one of center_crop, stretch')


def test_at_most_checks_each_key_against_the_bound():
    cfg = SimpleNamespace(d_model=MAX_WIDTH, dim_feedforward=MAX_WIDTH + 1)
    at_most(cfg, 'model', ('d_model',), MAX_WIDTH)
    with pytest.raises(ConfigError, match=rf'model\.dim_feedforward: must be <= {MAX_WIDTH}'):
        at_most(cfg, 'model', ('d_model', 'dim_feedforward'), MAX_WIDTH)
