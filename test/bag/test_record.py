"""bag.record: the ros2 bag record line and QoS file match what the converter reads."""

from dataclasses import replace
from pathlib import Path

from kinova_policy_ros.bag.options import ConvertOptions
from kinova_policy_ros.bag.record import (
    main,
    qos_overrides,
    record_command,
    record_topics,
    write_qos_overrides,
)
from kinova_policy_ros.core.errors import ConfigError
import pytest
import yaml


def test_topics_are_what_the_converter_reads_in_order():
    opts = ConvertOptions()
    assert record_topics(opts) == [
        opts.rgb_topic,
        opts.depth_topic,
        opts.camera_info_topic,
        opts.joint_states_topic,
        opts.tf_topic,
        opts.tf_static_topic,
    ]


def test_topics_follow_the_options_and_drop_duplicates():
    opts = replace(
        ConvertOptions(),
        rgb_topic='/cam/color/image_raw/compressed',
        camera_info_topic='/cam/color/camera_info',
        tf_static_topic='/tf',
    )
    topics = record_topics(opts)
    assert topics[0] == '/cam/color/image_raw/compressed'
    assert topics.count('/tf') == 1 and len(topics) == 5


def test_relative_topic_is_refused_by_name():
    with pytest.raises(ConfigError, match=r"depth_topic: 'camera/depth' is not an absolute"):
        record_topics(replace(ConvertOptions(), depth_topic='camera/depth'))


def test_qos_camera_best_effort_static_tf_latched():
    opts = ConvertOptions()
    qos = qos_overrides(opts, depth=7)
    for topic in (opts.rgb_topic, opts.depth_topic, opts.camera_info_topic):
        assert qos[topic] == {
            'history': 'keep_last',
            'depth': 7,
            'reliability': 'best_effort',
            'durability': 'volatile',
        }
    assert qos[opts.tf_static_topic]['durability'] == 'transient_local'
    assert qos[opts.tf_static_topic]['reliability'] == 'reliable'
    assert opts.joint_states_topic not in qos  # ros2_kortex publishes it reliable: default
    with pytest.raises(ConfigError, match='qos depth: must be >= 1, got 0'):
        qos_overrides(opts, depth=0)


def test_qos_file_round_trips_and_is_written_atomically(tmp_path: Path):
    opts = ConvertOptions()
    path = write_qos_overrides(tmp_path / 'qos.yaml', opts)
    assert yaml.safe_load(path.read_text()) == qos_overrides(opts)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['qos.yaml']


def test_command_line(tmp_path: Path):
    opts = ConvertOptions()
    cmd = record_command(opts, tmp_path / 'q.yaml', 'demo_001', 'sqlite3', 60)
    assert cmd[:5] == ['ros2', 'bag', 'record', '--storage', 'sqlite3']
    i = cmd.index('--qos-profile-overrides-path')
    assert cmd[i + 1] == str(tmp_path / 'q.yaml')
    assert cmd[cmd.index('--output') + 1] == 'demo_001'
    assert cmd[cmd.index('--max-bag-duration') + 1] == '60'
    assert cmd[-6:] == record_topics(opts)
    with pytest.raises(ConfigError, match=r"storage: 'db3' is not one of"):
        record_command(opts, tmp_path / 'q.yaml', storage='db3')
    with pytest.raises(ConfigError, match='max_bag_duration_s: must be >= 1'):
        record_command(opts, tmp_path / 'q.yaml', max_bag_duration_s=0)


def test_main_prints_the_line_for_a_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    cfg = tmp_path / 'conv.yaml'
    cfg.write_text('rgb_topic: /wrist/color/image_raw\n')
    qos = tmp_path / 'qos.yaml'
    assert main(['--config', str(cfg), '--qos-file', str(qos), '--output', 'b1']) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith('ros2 bag record --storage mcap --qos-profile-overrides-path ')
    assert '/wrist/color/image_raw' in line.split() and '--output b1' in line
    assert '/wrist/color/image_raw' in yaml.safe_load(qos.read_text())
