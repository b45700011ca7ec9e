"""
Reading rosbag2 recordings with ``rosbags``: opening, streaming and tolerant deserialization.

No rclpy: bags are read with the pure-Python ``rosbags`` library (sqlite3 ``.db3`` and MCAP,
compressed or not). What to open is found by content (:mod:`kinova_policy_ros.bag.layout`): a
rosbag2 directory whatever its name (``run.bag`` too), or storage files with their sibling
splits; ROS 1 bags and non-ROS MCAP files are refused with what they are. Bags recorded on
Humble carry no type definitions, so a Humble typestore is the default for types the bag does
not define.

Messages serialized by rclpy / Fast DDS (what ``ros2 bag record`` stores) end with a few padding
bytes that ``rosbags``' strict ``deserialize_cdr`` rejects ("CDR message size mismatch");
:func:`deserialize` accepts them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
import warnings

from kinova_policy_ros.bag.layout import BagLayout, locate, PartialBagWarning
from kinova_policy_ros.core.errors import BagError
from kinova_policy_ros.core.stamps import stamp_to_ns
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.interfaces import Connection
from rosbags.rosbag2 import Reader as Rosbag2Reader
from rosbags.rosbag2 import ReaderError as Rosbag2ReaderError
from rosbags.typesys import get_typestore, Stores

__all__ = [
    'MAX_TRAILING_BYTES',
    'BagSource',
    'TopicRequirement',
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
    Return the path a user-given bag path opens: its rosbag2 directory, or its first storage file.

    Found by content (:func:`kinova_policy_ros.bag.layout.locate`): a rosbag2 directory (with
    ``metadata.yaml``, whatever its name) or a single ``.db3``/``.mcap`` file is accepted; a
    storage file inside a directory that has ``metadata.yaml`` opens the directory (so split
    and compressed bags read completely). A partial split recording resolves to its first file.
    """
    layout = locate(path, allow_partial_split=True)
    return layout.open_path if layout.open_path is not None else layout.files[0]


class _Rosbag2AnyReader(AnyReader):
    """
    ``AnyReader`` that reads rosbag2 paths whatever their name.

    ``AnyReader`` takes paths that all end in ``.bag`` for ROS 1 bags; the layout found by
    content says they are rosbag2, so the rosbag2 readers replace the ROS 1 ones.
    """

    def __init__(self, paths: Sequence[Path], *, default_typestore: Any) -> None:
        super().__init__(list(paths), default_typestore=default_typestore)
        if not self.is2:
            self.is2 = True
            try:
                self.readers = [Rosbag2Reader(p) for p in paths]
            except Rosbag2ReaderError as err:
                raise AnyReaderError(*err.args) from None


@dataclass(frozen=True)
class TopicSummary:
    """A topic of a bag: message type and number of messages."""

    name: str
    msgtype: str
    count: int


@dataclass(frozen=True)
class TopicRequirement:
    """A topic the conversion needs: its role (``'depth'``), name and accepted types."""

    what: str
    topic: str
    msgtypes: tuple[str, ...]


class BagSource:
    """
    An open rosbag2 recording (context manager) with tolerant, topic-aware deserialization.

    Every failure is a :class:`BagError` that names the bag (and the topic when known).
    """

    def __init__(self, path: str | Path, *, allow_partial_split: bool = False) -> None:
        self.path = Path(path)
        self.layout: BagLayout = locate(self.path, allow_partial_split=allow_partial_split)
        self._reader: AnyReader | None = None

    def __enter__(self) -> BagSource:
        if self.layout.missing:
            warnings.warn(
                f'{self.path}: partial read of a split recording: missing '
                f'{list(self.layout.missing)}; reading {[f.name for f in self.layout.files]}',
                PartialBagWarning,
                stacklevel=2,
            )
        try:
            reader = _Rosbag2AnyReader(self.layout.paths, default_typestore=_default_typestore())
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
        """Return ``'mcap'`` or ``'sqlite3'`` (from the bag's metadata or its files' content)."""
        return self.layout.storage

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
        return self.require_topics([TopicRequirement(what, topic, tuple(msgtypes))])[0]

    def require_topics(self, needs: Sequence[TopicRequirement]) -> list[TopicSummary]:
        """
        Return the summary of every needed topic, or raise one :class:`BagError` naming them all.

        Every topic that is absent, empty or of another type is in the message (not only the
        first), followed by the topics the bag has when one is absent.
        """
        topics = self.topics()
        problems: list[str] = []
        for need in needs:
            summary = topics.get(need.topic)
            if summary is None:
                problems.append(f'{need.what} topic {need.topic!r} is not in the bag')
            elif summary.msgtype not in need.msgtypes:
                problems.append(
                    f'{need.what} topic {need.topic!r} has type {summary.msgtype}, '
                    f'expected {" or ".join(need.msgtypes)}'
                )
            elif summary.count == 0:
                problems.append(f'{need.what} topic {need.topic!r} is empty (0 messages)')
        if not problems:
            return [topics[need.topic] for need in needs]
        head = f'{len(problems)} topics are missing or unusable: ' if len(problems) > 1 else ''
        if any(need.topic not in topics for need in needs):
            have = ', '.join(
                f'{t.name} ({t.msgtype})' for t in sorted(topics.values(), key=lambda t: t.name)
            )
            problems.append(f'the bag has: {have or "no topics"}')
        raise BagError(f'{self.path}: {head}' + '; '.join(problems))

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
