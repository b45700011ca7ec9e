"""testing.bag_metadata: the metadata of a split recording from its splits'."""

from kinova_policy_ros.testing.bag_metadata import merge_split_metadata
import pytest


def _meta(name: str, start: int, duration: int, counts: dict[str, int]) -> dict:
    return {
        'rosbag2_bagfile_information': {
            'version': 8,
            'relative_file_paths': [f'{name}.db3'],
            'files': [{'path': f'{name}.db3', 'message_count': sum(counts.values())}],
            'message_count': sum(counts.values()),
            'starting_time': {'nanoseconds_since_epoch': start},
            'duration': {'nanoseconds': duration},
            'topics_with_message_count': [
                {'topic_metadata': {'name': t}, 'message_count': n} for t, n in counts.items()
            ],
        }
    }


def test_splits_merge_in_order_with_summed_counts_and_the_whole_span():
    merged = merge_split_metadata(
        [
            _meta('rec_0', 100, 50, {'/a': 3, '/b': 1}),
            _meta('rec_1', 160, 40, {'/a': 2, '/c': 4}),
        ]
    )['rosbag2_bagfile_information']
    assert merged['relative_file_paths'] == ['rec_0.db3', 'rec_1.db3']
    assert [f['path'] for f in merged['files']] == ['rec_0.db3', 'rec_1.db3']
    assert merged['message_count'] == 10
    assert merged['starting_time'] == {'nanoseconds_since_epoch': 100}
    assert merged['duration'] == {'nanoseconds': 100}  # 100 .. 200
    topics = merged['topics_with_message_count']
    counts = {t['topic_metadata']['name']: t['message_count'] for t in topics}
    assert counts == {'/a': 5, '/b': 1, '/c': 4}
    assert merged['version'] == 8


def test_no_split_is_an_error():
    with pytest.raises(ValueError, match='no split metadata'):
        merge_split_metadata([])
