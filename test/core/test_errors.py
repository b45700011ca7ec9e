"""The typed exceptions (kinova_policy_ros.core.errors): one base, the built-in bases kept."""

from kinova_policy_ros.core import errors
from kinova_policy_ros.core.errors import (
    BagError,
    CheckpointError,
    ConfigError,
    DecodeError,
    KinovaPolicyError,
    SchemaError,
    UnsafeCommandError,
)
import pytest

ALL = (BagError, CheckpointError, ConfigError, DecodeError, SchemaError, UnsafeCommandError)


def test_every_error_of_the_module_is_listed_here():
    defined = {
        v
        for v in vars(errors).values()
        if isinstance(v, type) and issubclass(v, BaseException) and v.__module__ == errors.__name__
    }
    assert defined == {KinovaPolicyError, *ALL}


@pytest.mark.parametrize('cls', ALL)
def test_one_base_catches_them_all(cls):
    assert issubclass(cls, KinovaPolicyError) and issubclass(KinovaPolicyError, Exception)
    with pytest.raises(KinovaPolicyError, match=r'^topic /camera: bad value 3$'):
        raise cls('topic /camera: bad value 3')


def test_value_errors_stay_value_errors():
    # callers that catch ValueError (argparse, numpy-style code) keep working
    assert {c for c in ALL if issubclass(c, ValueError)} == {ConfigError, UnsafeCommandError}
    with pytest.raises(ValueError, match=r'train\.lr: must be > 0, got -1'):
        raise ConfigError('train.lr: must be > 0, got -1')


def test_siblings_do_not_catch_each_other():
    for cls in ALL:
        for other in ALL:
            assert issubclass(cls, other) == (cls is other), (cls, other)


def test_message_and_cause_are_kept():
    cause = OSError(2, 'No such file or directory')
    with pytest.raises(SchemaError) as info:
        try:
            raise cause
        except OSError as err:
            raise SchemaError(f'ep.npz: cannot read npz episode: {err}') from err
    want = 'ep.npz: cannot read npz episode: [Errno 2] No such file or directory'
    assert str(info.value) == want
    assert info.value.__cause__ is cause
    assert info.value.args == (str(info.value),)
