"""testing.mcap_synthetic: minimal MCAP files of any profile, readable by the MCAP layout."""

from pathlib import Path

from kinova_policy_ros.testing import bag_synthetic
from kinova_policy_ros.testing import mcap_synthetic as syn


def test_write_mcap_layout(tmp_path: Path) -> None:
    path = syn.write_mcap(tmp_path / 'a.mcap', 'x', [('/t', 'S', 'protobuf', b'd', 'pb', [b'm'])])
    data = path.read_bytes()
    assert data.startswith(b'\x89MCAP0\r\n\x01') and data.endswith(b'\x89MCAP0\r\n')
    footer = data[-37:]
    assert footer[0] == 0x02
    summary_start = int.from_bytes(footer[9:17], 'little')
    assert data[summary_start] == 0x03  # the summary begins with the schema record
    assert data[summary_start - 13] == 0x0F  # after the data-end record (9 + 4 bytes)


def test_profile_and_channels_are_written_in_order(tmp_path: Path) -> None:
    channels = [
        ('/a', 'A', 'jsonschema', b'{}', 'json', [b'1', b'2']),
        ('/b', 'B', 'protobuf', b'pb', 'protobuf', []),
    ]
    data = syn.write_mcap(tmp_path / 'b.mcap', 'foxglove', channels).read_bytes()
    assert b'foxglove' in data[:40]  # the header record's profile
    assert data.index(b'/a') < data.index(b'/b')
    # one message record per payload (op 0x05), both in the data section
    assert data.count(bytes([0x05])) >= 2


def test_bag_synthetic_re_exports_the_writer() -> None:
    assert bag_synthetic.write_mcap is syn.write_mcap
