"""
Typed exceptions of kinova_policy_ros.

Every message names what was wrong and where: the file, topic, key, field or parameter, and the
offending value. I/O errors are wrapped with the path (``raise SchemaError(...) from err``).
"""


class KinovaPolicyError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(KinovaPolicyError, ValueError):
    """A configuration field, command-line override or ROS parameter is invalid."""


class SchemaError(KinovaPolicyError):
    """An npz episode file is missing, unreadable or violates the episode schema."""


class CheckpointError(KinovaPolicyError):
    """A checkpoint directory is missing, incomplete or does not match what is asked of it."""


class DecodeError(KinovaPolicyError):
    """An image message cannot be decoded (unknown encoding, wrong size, corrupt payload)."""


class UnsafeCommandError(KinovaPolicyError, ValueError):
    """A prediction or measurement cannot be turned into a safe command (non-finite, bad shape)."""


class BagError(KinovaPolicyError):
    """A rosbag2 recording cannot be converted (corrupt, missing topic, bad stamps)."""
