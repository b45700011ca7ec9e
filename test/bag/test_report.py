"""Tests of kinova_policy_ros.bag.report: the parts of a bag's JSON report and its writing."""

from dataclasses import dataclass, replace
import json
from pathlib import Path

from kinova_policy_ros.bag.options import ConvertOptions
from kinova_policy_ros.bag.report import (
    BagReport,
    dropped_total,
    options_report,
    time_span,
    topics_report,
    write_report,
)
from kinova_policy_ros.core.errors import BagError, SchemaError
import numpy as np
import pytest


@dataclass
class _Topic:
    msgtype: str
    count: int


def test_time_span() -> None:
    assert time_span(np.zeros(0, np.int64)) == {
        'start_ns': 0, 'end_ns': 0, 'duration_s': 0.0, 'rate_hz': 0.0,
    }
    assert time_span(np.array([5], np.int64)) == {
        'start_ns': 5, 'end_ns': 5, 'duration_s': 0.0, 'rate_hz': 0.0,
    }
    span = time_span(np.array([0, 100_000_000, 200_000_000, 500_000_000], np.int64))
    assert span['end_ns'] == 500_000_000 and span['duration_s'] == pytest.approx(0.5)
    assert span['rate_hz'] == pytest.approx(10.0)  # the median step, not the mean


def test_topics_report_marks_missing_and_unused_topics() -> None:
    opts = replace(ConvertOptions(), tf_topic='/tf_other')
    topics = {opts.rgb_topic: _Topic('sensor_msgs/msg/Image', 7), '/tf': _Topic('x', 3)}
    out = topics_report(topics, [opts.rgb_topic], opts)
    assert list(out) == ['rgb', 'depth', 'joint_states', 'camera_info', 'tf', 'tf_static']
    assert out['rgb'] == {
        'name': opts.rgb_topic, 'type': 'sensor_msgs/msg/Image', 'messages': 7, 'used': True,
    }
    assert out['tf'] == {'name': '/tf_other', 'type': None, 'messages': 0, 'used': False}


def test_options_report_is_json_and_leaves_out_run_options() -> None:
    opts = replace(ConvertOptions(), resize=(24, 32), workers=4)
    out = options_report(opts)
    assert 'workers' not in out and 'progress' not in out and 'overwrite' not in out
    assert out['resize'] == [24, 32] and out['joint_names'] == list(opts.joint_names)
    assert json.loads(json.dumps(out)) == out


def test_dropped_total() -> None:
    assert dropped_total({
        'no_depth': 1, 'joint_gap': 2, 'no_joint_state': 4, 'duplicate_stamp': 8,
        'short_segment': 16,
    }) == 31


def test_write_report_refuses_to_overwrite_and_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / 'r.json'
    report: BagReport = {'source': 'bag'}  # type: ignore[typeddict-item]
    write_report(path, report, overwrite=False)
    assert json.loads(path.read_text()) == {'source': 'bag'}
    assert path.read_text().endswith('}\n')
    with pytest.raises(SchemaError, match=r'r\.json: exists \(use overwrite'):
        write_report(path, report, overwrite=False)
    write_report(path, {'source': 'new'}, overwrite=True)  # type: ignore[typeddict-item]
    assert json.loads(path.read_text()) == {'source': 'new'}
    (tmp_path / 'dir.json').mkdir()
    with pytest.raises(BagError, match=r'dir\.json: cannot write report: '):
        write_report(tmp_path / 'dir.json', report, overwrite=True)
