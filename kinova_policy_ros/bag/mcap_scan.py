"""
A look at an MCAP file's header and channels, to tell a ROS 2 recording from any other MCAP.

MCAP is a general container: rosbag2 writes profile ``ros2`` with CDR messages and ``ros2msg`` /
``ros2idl`` schemas, but Foxglove and other tools write profile ``''`` or ``protobuf`` /
``jsonschema`` channels that ``rosbags`` cannot read (it reports them as a broken file).
:func:`check_mcap` reads the header record and the schema and channel records of the summary
section (or, without a summary, of the data section, skipping chunks by their length) and raises
:class:`BagError` that says what the file is. Record layout: the MCAP specification
(https://mcap.dev/spec).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import struct
from typing import BinaryIO

from kinova_policy_ros.core.errors import BagError

__all__ = ['ROS2_MESSAGE_ENCODING', 'ROS2_SCHEMA_ENCODINGS', 'McapChannel', 'check_mcap', 'scan']

MAGIC = b'\x89MCAP0\r\n'
ROS2_MESSAGE_ENCODING = 'cdr'
#: Schema encodings rosbags reads ('' for a schemaless channel).
ROS2_SCHEMA_ENCODINGS = ('ros2msg', 'ros2idl', 'omgidl', '')
_HEADER, _FOOTER, _SCHEMA, _CHANNEL, _DATA_END = 0x01, 0x02, 0x03, 0x04, 0x0F
_FOOTER_SIZE = 1 + 8 + 20 + len(MAGIC)


@dataclass(frozen=True)
class McapChannel:
    """A channel: topic, message encoding and its schema's name and encoding."""

    topic: str
    message_encoding: str
    schema_name: str
    schema_encoding: str

    @property
    def is_ros2(self) -> bool:
        return (
            self.message_encoding == ROS2_MESSAGE_ENCODING
            and self.schema_encoding in ROS2_SCHEMA_ENCODINGS
        )

    def describe(self) -> str:
        schema = f'{self.schema_encoding or "no"} schema {self.schema_name!r}'
        return f'{self.topic} ({self.message_encoding} messages, {schema})'


def _string(buf: bytes, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from('<I', buf, pos)
    start = pos + 4
    return buf[start:start + n].decode('utf-8', 'replace'), start + n


def _records(f: BinaryIO, start: int, end: int) -> list[tuple[int, bytes]]:
    """Return (opcode, content) of the schema and channel records in ``[start, end)``."""
    out: list[tuple[int, bytes]] = []
    pos = start
    while pos + 9 <= end:
        f.seek(pos)
        head = f.read(9)
        if len(head) < 9:
            break
        op, length = head[0], struct.unpack_from('<Q', head, 1)[0]
        if op in (_FOOTER, _DATA_END):
            break
        if pos + 9 + length > end:  # a record longer than what is left: damaged, stop here
            break
        if op in (_SCHEMA, _CHANNEL):
            out.append((op, f.read(length)))
        pos += 9 + length
    return out


def scan(path: Path) -> tuple[str, list[McapChannel]]:
    """
    Return the profile and the channels of MCAP file ``path``.

    Raises :class:`BagError` naming the file when it is not MCAP or its header cannot be read.
    """
    try:
        with path.open('rb') as f:
            head = f.read(8 + 9)
            if not head.startswith(MAGIC) or len(head) < 17 or head[8] != _HEADER:
                raise BagError(f'{path}: not an MCAP file (no MCAP magic and header record)')
            (length,) = struct.unpack_from('<Q', head, 9)
            size = f.seek(0, 2)
            if length > size - len(head):  # checked before anything of that size is read
                raise BagError(
                    f'{path}: damaged MCAP file: its header record claims {length} bytes, '
                    f'the file has {size}'
                )
            f.seek(len(head))
            header = f.read(length)
            profile, _ = _string(header, 0)
            f.seek(max(size - _FOOTER_SIZE, 0))
            footer = f.read(_FOOTER_SIZE)
            summary_start = 0
            if len(footer) == _FOOTER_SIZE and footer[0] == _FOOTER and footer.endswith(MAGIC):
                summary_start = struct.unpack_from('<Q', footer, 9)[0]
            if summary_start:
                records = _records(f, summary_start, size - _FOOTER_SIZE)
            else:
                records = _records(f, 8 + 9 + length, size)
    except (OSError, struct.error) as err:
        raise BagError(f'{path}: cannot read the MCAP header: {err}') from err
    schemas: dict[int, tuple[str, str]] = {}
    channels: list[McapChannel] = []
    for op, rec in records:
        try:
            (ident,) = struct.unpack_from('<H', rec, 0)
            if op == _SCHEMA:
                name, pos = _string(rec, 2)
                encoding, _ = _string(rec, pos)
                schemas[ident] = (name, encoding)
            else:
                (schema_id,) = struct.unpack_from('<H', rec, 2)
                topic, pos = _string(rec, 4)
                encoding, _ = _string(rec, pos)
                name, schema_enc = schemas.get(schema_id, ('', ''))
                channels.append(McapChannel(topic, encoding, name, schema_enc))
        except struct.error:
            continue  # a damaged record: rosbags will say what is wrong with the file
    return profile, channels


def check_mcap(path: Path) -> None:
    """
    Raise :class:`BagError` unless ``path`` is an MCAP file of a ROS 2 recording.

    The error says what the file is (its profile and its non-ROS channels) and what to do.
    """
    profile, channels = scan(path)
    foreign = [c for c in channels if not c.is_ros2]
    if profile == 'ros2' and not foreign:
        return
    what = (
        f'an MCAP file with profile {profile!r}'
        if profile != 'ros2'
        else 'an MCAP file with profile ros2 but channels that are not ROS 2 CDR messages'
    )
    listed = ', '.join(c.describe() for c in (foreign or channels)[:8]) or 'no channels'
    raise BagError(
        f'{path}: {what}, not a rosbag2 recording (rosbag2 writes profile ros2, cdr messages, '
        f'ros2msg / ros2idl schemas); channels: {listed}. bag_to_npz reads ROS 2 messages only: '
        f'record the robot with ros2 bag record (docs/recording.md), or convert the data to '
        f'sensor_msgs / tf2_msgs ROS 2 messages first'
    )
