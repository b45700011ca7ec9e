"""
One ``metadata.yaml`` for a split recording, from the metadata of each split.

``ros2 bag record --max-bag-duration`` writes ``<name>_0``, ``<name>_1``, ... storage files and one
``metadata.yaml`` listing them all; the synthetic bag writer builds each split as its own bag and
merges their metadata with :func:`merge_split_metadata`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ['merge_split_metadata']


def merge_split_metadata(metas: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Merge the ``metadata.yaml`` contents of the splits, in order, into the recording's."""
    if not metas:
        raise ValueError('merge_split_metadata: no split metadata given')
    infos = [m['rosbag2_bagfile_information'] for m in metas]
    merged = dict(infos[0])
    merged['relative_file_paths'] = [p for i in infos for p in i['relative_file_paths']]
    merged['files'] = [f for i in infos for f in i['files']]
    merged['message_count'] = sum(i['message_count'] for i in infos)
    start = min(i['starting_time']['nanoseconds_since_epoch'] for i in infos)
    end = max(
        i['starting_time']['nanoseconds_since_epoch'] + i['duration']['nanoseconds'] for i in infos
    )
    merged['starting_time'] = {'nanoseconds_since_epoch': start}
    merged['duration'] = {'nanoseconds': end - start}
    topics: dict[str, dict[str, Any]] = {}
    for info in infos:
        for t in info['topics_with_message_count']:
            name = t['topic_metadata']['name']
            if name in topics:
                topics[name]['message_count'] += t['message_count']
            else:
                topics[name] = dict(t)
    merged['topics_with_message_count'] = list(topics.values())
    return {'rosbag2_bagfile_information': merged}
