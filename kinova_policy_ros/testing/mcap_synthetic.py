"""
Minimal MCAP files of any profile and encodings, as non-ROS tools write them.

For the converter's refusal tests: foxglove/protobuf/json channels, a ROS 1 profile, none.
"""

from __future__ import annotations

from pathlib import Path
import struct

__all__ = ['McapChannelSpec', 'write_mcap']


#: One MCAP channel for :func:`write_mcap`: topic, schema name, schema encoding, schema data,
#: message encoding and the messages' payloads.
McapChannelSpec = tuple[str, str, str, bytes, str, list[bytes]]


def _record(op: int, content: bytes) -> bytes:
    return bytes([op]) + len(content).to_bytes(8, 'little') + content


def _mcap_str(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(4, 'little') + raw


def write_mcap(path: str | Path, profile: str, channels: list[McapChannelSpec]) -> Path:
    """
    Write a minimal MCAP file (any profile and encodings, as non-ROS tools write them).

    Unchunked messages, a summary section with the schema and channel records, and the footer
    pointing at it (https://mcap.dev/spec). Returns the path.
    """
    magic = b'\x89MCAP0\r\n'
    schemas, chans, msgs = b'', b'', b''
    for k, (topic, name, enc, data, msg_enc, payloads) in enumerate(channels):
        schemas += _record(
            0x03,
            struct.pack('<H', k + 1) + _mcap_str(name) + _mcap_str(enc)
            + len(data).to_bytes(4, 'little') + data,
        )
        chans += _record(
            0x04,
            struct.pack('<HH', k + 1, k + 1) + _mcap_str(topic) + _mcap_str(msg_enc)
            + (0).to_bytes(4, 'little'),
        )
        for i, payload in enumerate(payloads):
            msgs += _record(0x05, struct.pack('<HIQQ', k + 1, i, 1000 + i, 1000 + i) + payload)
    head = magic + _record(0x01, _mcap_str(profile) + _mcap_str('kinova_policy_ros test'))
    data_section = head + schemas + chans + msgs + _record(0x0F, (0).to_bytes(4, 'little'))
    summary_start = len(data_section)
    summary = schemas + chans
    footer = _record(0x02, struct.pack('<QQI', summary_start, 0, 0))
    out = Path(path)
    out.write_bytes(data_section + summary + footer + magic)
    return out
