"""
Reading rosbag2 recordings with ``rosbags``: opening, streaming and tolerant deserialization.

No rclpy: bags are read with the pure-Python ``rosbags`` library (sqlite3 ``.db3`` and MCAP,
compressed or not). Bags recorded on Humble carry no type definitions, so a Humble typestore is
the default for types the bag does not define.

Messages serialized by rclpy / Fast DDS (what ``ros2 bag record`` stores) end with a few padding
bytes that ``rosbags``' strict ``deserialize_cdr`` rejects ("CDR message size mismatch");
:func:`deserialize` accepts them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kinova_policy_ros.core.errors import BagError
from kinova_policy_ros.core.stamps import stamp_to_ns
from rosbags.highlevel import AnyReader
from rosbags.interfaces import Connection
from rosbags.typesys import get_typestore, Stores

__all__ = [
    'MAX_TRAILING_BYTES',
    'BagSource',
    'TopicSummary',
    'deserialize',
    'header_stamp_ns',
    'resolve_bag_path',
    'stamp_to_ns',
]

#: Trailing bytes accepted after a CDR message (rclpy/Fast DDS adds 8; CDR alignment up to 3).
MAX_TRAILING_BYTES = 64

_DEFAULT_TYPESTORE = None


def _default_typestore() -> Any:
    global _DEFAULT_TYPESTORE
    if _DEFAULT_TYPESTORE is None:
        _DEFAULT_TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)
    return _DEFAULT_TYPESTORE


def deserialize(typestore: Any, rawdata: bytes | memoryview, typename: str) -> Any:
    """
    Deserialize one CDR message, accepting trailing padding bytes.

    Raises :class:`ValueError` naming the type for an invalid encapsulation, a payload the type
    cannot be read from (truncated or corrupt), or more than :data:`MAX_TRAILING_BYTES` left over
    (a wrong type definition).
    """
    view = memoryview(rawdata)
    if len(view) < 4 or bytes(view[:2]) not in (b'\x00\x00', b'\x00\x01'):
        raise ValueError(f'{typename}: invalid or unsupported CDR encapsulation')
    msgdef = typestore.get_msgdef(typename)
    func = msgdef.deserialize_cdr_le if view[1] else msgdef.deserialize_cdr_be
    try:
        message, pos = func(view[4:], 0, msgdef.cls, typestore)
    except (IndexError, ValueError, UnicodeDecodeError, Exception) as err:
        raise ValueError(
            f'{typename}: cannot deserialize {len(view)} bytes ({type(err).__name__}: {err})'
        ) from err
    trailing = len(view) - 4 - pos
    if trailing < 0 or trailing > MAX_TRAILING_BYTES:
        raise ValueError(
            f'{typename}: CDR message size mismatch ({len(view)} bytes, the type reads '
            f'{pos + 4}); wrong type definition or corrupt message'
        )
    return message


def header_stamp_ns(msg: Any) -> int:
    """Return ``msg.header.stamp`` in nanoseconds (0 when the message has no header)."""
    header = getattr(msg, 'header', None)
    return 0 if header is None else stamp_to_ns(header.stamp)


def resolve_bag_path(path: str | Path) -> Path:
    """
    Return the path ``rosbags`` should open for a user-given bag path.

    A rosbag2 directory (with ``metadata.yaml``) or a single ``.db3``/``.mcap`` file is
    accepted; a storage file inside a directory that has ``metadata.yaml`` opens the directory
    (so split and compressed bags read completely).
    """
    p = Path(path)
    if not p.exists():
        raise BagError(f'{p}: bag does not exist')
    if p.is_dir():
        if not (p / 'metadata.yaml').exists():
            files = sorted(x.name for x in p.iterdir())[:10]
            raise BagError(f'{p}: not a rosbag2 directory (no metadata.yaml; contains {files})')
        return p
    if (p.parent / 'metadata.yaml').exists():
        return p.parent
    if p.suffix not in ('.db3', '.mcap'):
        raise BagError(f'{p}: not a rosbag2 file (expected a directory, .db3 or .mcap)')
    return p


@dataclass(frozen=True)
class TopicSummary:
    """A topic of a bag: message type and number of messages."""

    name: str
    msgtype: str
    count: int


class BagSource:
    """
    An open rosbag2 recording (context manager) with tolerant, topic-aware deserialization.

    Every failure is a :class:`BagError` that names the bag (and the topic when known).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._resolved = resolve_bag_path(self.path)
        self._reader: AnyReader | None = None

    def __enter__(self) -> BagSource:
        try:
            reader = AnyReader([self._resolved], default_typestore=_default_typestore())
            reader.open()
        except BagError:
            raise
        except Exception as err:
            raise BagError(
                f'{self.path}: cannot open bag (truncated or corrupt?): '
                f'{type(err).__name__}: {err}'
            ) from err
        self._reader = reader
        return self

    def __exit__(self, *exc: object) -> None:
        if self._reader is not None:
            try:
                self._reader.close()
            except Exception:
                pass
            self._reader = None

    @property
    def reader(self) -> AnyReader:
        if self._reader is None:
            raise BagError(f'{self.path}: bag is not open')
        return self._reader

    @property
    def storage(self) -> str:
        """Return ``'mcap'`` or ``'sqlite3'`` (from the storage files of the bag)."""
        names = [self._resolved.name]
        if self._resolved.is_dir():
            names = [x.name for x in self._resolved.iterdir()]
        return 'mcap' if any('.mcap' in n for n in names) else 'sqlite3'

    def topics(self) -> dict[str, TopicSummary]:
        """Return every topic of the bag with its type and message count."""
        out: dict[str, TopicSummary] = {}
        for conn in self.reader.connections:
            prev = out.get(conn.topic)
            count = int(conn.msgcount) + (prev.count if prev else 0)
            out[conn.topic] = TopicSummary(conn.topic, conn.msgtype, count)
        return out

    def connections(self, topic: str) -> list[Connection]:
        return [c for c in self.reader.connections if c.topic == topic]

    def require_topic(self, topic: str, what: str, msgtypes: Sequence[str]) -> TopicSummary:
        """
        Return the summary of ``topic``; raise :class:`BagError` when absent, empty or mistyped.

        The error for a missing topic lists the topics the bag has.
        """
        topics = self.topics()
        if topic not in topics:
            have = ', '.join(
                f'{t.name} ({t.msgtype})' for t in sorted(topics.values(), key=lambda t: t.name)
            )
            raise BagError(
                f'{self.path}: {what} topic {topic!r} is not in the bag; '
                f'the bag has: {have or "no topics"}'
            )
        summary = topics[topic]
        if summary.msgtype not in msgtypes:
            raise BagError(
                f'{self.path}: {what} topic {topic!r} has type {summary.msgtype}, '
                f'expected {" or ".join(msgtypes)}'
            )
        if summary.count == 0:
            raise BagError(f'{self.path}: {what} topic {topic!r} is empty (0 messages)')
        return summary

    def deserialize(self, rawdata: bytes | memoryview, conn: Connection) -> Any:
        try:
            return deserialize(self.reader.typestore, rawdata, conn.msgtype)
        except ValueError as err:
            raise BagError(f'{self.path}: topic {conn.topic!r}: {err}') from err
        except KeyError as err:
            raise BagError(
                f'{self.path}: topic {conn.topic!r}: unknown message type {conn.msgtype}'
            ) from err

    def messages(self, topics: Sequence[str]) -> Iterator[tuple[Connection, int, bytes]]:
        """
        Stream ``(connection, bag time ns, raw CDR)`` of ``topics`` in bag-time order.

        Storage errors (a truncated file, a corrupt chunk) become :class:`BagError` naming the
        bag and the last topic read.
        """
        conns = [c for c in self.reader.connections if c.topic in set(topics)]
        if not conns:
            return
        last = 'no message read yet'
        gen = self.reader.messages(connections=conns)
        while True:
            try:
                item = next(gen)
            except StopIteration:
                return
            except BagError:
                raise
            except Exception as err:
                raise BagError(
                    f'{self.path}: cannot read messages (truncated or corrupt bag; '
                    f'last read: {last}): {type(err).__name__}: {err}'
                ) from err
            last = f'topic {item[0].topic!r} at bag time {item[1]}'
            yield item
