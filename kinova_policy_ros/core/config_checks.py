"""
The checks every configuration dataclass runs in ``__post_init__``, and the size bounds.

A failed check raises :class:`~kinova_policy_ros.core.errors.ConfigError` naming the dotted key
and the value (``model.d_model: must be >= 1, got 0``).
"""

from kinova_policy_ros.core.errors import ConfigError

#: Upper bounds of the sizes a config may ask for: far above any model this package trains,
#: low enough that a hostile ``config.json`` (``d_model: 1000000000``) is refused by name before
#: anything is allocated. The weights file bounds the whole model (policy.checkpoint).
MAX_WIDTH = 8192  # d_model, dim_feedforward, feature sizes, conv channels
MAX_LAYERS = 64  # transformer layers of each stack, conv layers
MAX_STEPS = 4096  # horizons (frames)
MAX_JOINTS = 64
MAX_IMAGE_SIDE = 4096  # data.resize_hw


def require(ok: bool, key: str, value: object, what: str) -> None:
    """Raise ``ConfigError('<key>: <what>, got <value>')`` unless ``ok``."""
    if not ok:
        raise ConfigError(f'{key}: {what}, got {value!r}')


def at_most(cfg: object, section: str, keys: tuple[str, ...], bound: int) -> None:
    """Require ``cfg.<key> <= bound`` for each of ``keys`` (named ``<section>.<key>``)."""
    for key in keys:
        value = getattr(cfg, key)
        require(value <= bound, f'{section}.{key}', value, f'must be <= {bound}')
