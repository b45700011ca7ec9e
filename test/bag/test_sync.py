"""
Tests of kinova_policy_ros.bag.sync: joint tracks, TF lookup, continuous joints, segments.

Expected values are worked out by hand from the inputs (linear interpolation, whole turns).
"""

import math

from kinova_policy_ros.bag.sync import (
    JointTrack,
    quat_to_matrix,
    rebase_continuous,
    slerp,
    split_segments,
    TfBuffer,
)
from kinova_policy_ros.core.errors import BagError
import numpy as np
import pytest

NAMES = tuple(f'joint_{i}' for i in range(1, 8))
MS = 1_000_000


def test_joint_track_interpolates_by_name_and_unwraps() -> None:
    track = JointTrack(NAMES)
    names = ['finger_joint', *reversed(NAMES)]
    for k, (t, q3) in enumerate([(0, 3.0), (10, -3.0), (20, -2.9)]):
        pos = [0.7] + [float(k + i) for i in range(7)]
        pos[names.index('joint_3')] = q3
        track.add(t * 1_000_000, names, pos, [])
    track.add(0, ['finger_joint'], [0.1], [])  # gripper-only message: skipped, no time check
    assert track.skipped_without_arm_joints == 1
    s = track.sample(np.array([5_000_000, 10_000_000, 25_000_000, 200_000_000]), 10_000_000)
    # joint_1 is reversed position 6: values k + 6 at k = 0, 1, 2 -> 6.5 at 5 ms
    assert s.q[0, 0] == pytest.approx(6.5)
    # joint_3 goes 3.0 -> -3.0 (+0.283 through pi): the midpoint is near pi, not 0
    assert s.q[0, 2] == pytest.approx(3.0 + (2 * math.pi - 6.0) / 2)
    assert s.q[2, 0] == pytest.approx(8.0)  # after the last message, within the gap: held
    assert s.valid.tolist() == [True, True, True, False]
    assert s.reason[3] == 'no_joint_state'
    assert s.velocity_source == 'finite_difference'
    assert s.dq[1, 0] == pytest.approx(100.0)  # 1 rad per 10 ms


def test_joint_track_errors_name_where() -> None:
    track = JointTrack(NAMES, where='bag: /joint_states')
    with pytest.raises(BagError, match=r"bag: /joint_states: joint 'joint_7' missing"):
        track.add(0, list(NAMES[:6]), [0.0] * 6, [])
    track.add(10, list(NAMES), [0.0] * 7, [])
    with pytest.raises(BagError, match=r'stamps are not monotonic \(10 ns then 5 ns'):
        track.add(5, list(NAMES), [0.0] * 7, [])
    with pytest.raises(BagError, match='7 names but 3 positions'):
        track.add(20, list(NAMES), [0.0] * 3, [])


def test_joint_gap_is_not_bridged() -> None:
    track = JointTrack(NAMES)
    for t in (0, 10, 300, 310):
        track.add(t * 1_000_000, list(NAMES), [t / 1000.0] * 7, [1.0] * 7)
    s = track.sample(np.array([5, 150, 305]) * 1_000_000, 100_000_000)
    assert s.valid.tolist() == [True, False, True]
    assert s.reason.tolist() == ['', 'joint_gap', '']
    assert s.velocity_source == 'message' and np.all(s.dq[s.valid] == 1.0)


def test_rebase_and_segments() -> None:
    q = np.zeros((3, 7))
    q[:, 2] = [3.5, 3.6, 3.7]
    q[:, 1] = [3.5, 3.6, 3.7]  # not continuous: untouched
    out = rebase_continuous(q, np.array([True, False, True, False, True, False, True]))
    np.testing.assert_allclose(out[:, 2], np.array([3.5, 3.6, 3.7]) - 2 * math.pi)
    np.testing.assert_allclose(out[:, 1], q[:, 1])
    stamps = np.array([0, 10, 20, 100, 110, 500])
    assert split_segments(stamps, 50) == [slice(0, 3), slice(3, 5), slice(5, 6)]
    assert split_segments(stamps, None) == [slice(0, 6)]
    assert split_segments(np.zeros(0), 5) == []


def test_slerp_and_quaternions() -> None:
    def about_z(a: float) -> np.ndarray:
        return np.array([[0.0, 0.0, math.sin(a / 2), math.cos(a / 2)]])

    mid = slerp(about_z(0.2), about_z(1.0), np.array([0.25]))
    np.testing.assert_allclose(mid, about_z(0.4), atol=1e-12)
    np.testing.assert_allclose(slerp(about_z(0.3), -about_z(0.3), np.array([0.5])), about_z(0.3))
    r = quat_to_matrix(about_z(math.pi / 2))[0]
    np.testing.assert_allclose(r @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-12)


def test_tf_buffer_chain_and_lookup() -> None:
    tf = TfBuffer()
    s = math.sin(math.pi / 4)
    tf.add('/base_link', 'a', 0, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0), static=False)
    tf.add('base_link', 'a', 100, (1.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0), static=False)
    tf.add('a', 'ee', 0, (0.0, 1.0, 0.0), (0.0, 0.0, s, s), static=True)
    assert tf.chain('base_link', 'ee') == [('base_link', 'a'), ('a', 'ee')]
    assert tf.chain('base_link', 'other') is None
    poses, ok = tf.lookup('base_link', 'ee', np.array([50, 150, 1000]), 100)
    assert ok.tolist() == [True, True, False]
    np.testing.assert_allclose(poses[0, :3, 3], [0.5, 1.0, 0.0])
    np.testing.assert_allclose(poses[0, :3, :3] @ [1.0, 0, 0], [0.0, 1.0, 0.0], atol=1e-12)
    _, ok = tf.lookup('base_link', 'nowhere', np.array([0]), 100)
    assert not ok.any()


def _track(stamps_ms: list[int], q3: list[float], velocity: bool = False) -> JointTrack:
    """Return a track whose joint_1 is the stamp in seconds and joint_3 takes ``q3``."""
    track = JointTrack(NAMES)
    for t, v in zip(stamps_ms, q3):
        pos = [t / 1000.0, 0.0, v, 0.0, 0.0, 0.0, 0.0]
        track.add(t * MS, list(NAMES), pos, [2.0] * 7 if velocity else [])
    return track


def test_sample_without_messages_is_invalid_everywhere() -> None:
    s = JointTrack(NAMES).sample(np.array([0, 5 * MS]), 100 * MS)
    assert s.valid.tolist() == [False, False]
    assert s.reason.tolist() == ['no_joint_state', 'no_joint_state']
    assert s.velocity_source == 'none' and s.q.shape == (2, 7) and not s.q.any()


def test_single_message_is_held_within_the_gap_only() -> None:
    s = _track([100], [0.5]).sample(np.array([0, 50, 100, 150, 201]) * MS, 100 * MS)
    assert s.valid.tolist() == [True, True, True, True, False]
    assert s.reason.tolist() == ['', '', '', '', 'no_joint_state']
    np.testing.assert_allclose(s.q[:4, 2], 0.5)
    assert s.velocity_source == 'none' and not s.dq.any()


def test_ends_are_held_not_extrapolated() -> None:
    track = _track([100, 200], [1.0, 2.0], velocity=True)
    s = track.sample(np.array([40, 100, 150, 200, 260, 301]) * MS, 100 * MS)
    # before the first message: its value (not 0.4); after the last: its value (not 2.6)
    np.testing.assert_allclose(s.q[:, 2], [1.0, 1.0, 1.5, 2.0, 2.0, 2.0])
    np.testing.assert_allclose(s.q[:5, 0], [0.1, 0.1, 0.15, 0.2, 0.2])
    assert s.valid.tolist() == [True, True, True, True, True, False]
    assert s.velocity_source == 'message' and np.all(s.dq == 2.0)


def test_gap_limit_is_inclusive_at_both_kinds_of_gap() -> None:
    track = _track([0, 100, 250], [0.0, 1.0, 2.0])
    s = track.sample(np.array([50, 175, 350, 351, -100, -101]) * MS, 100 * MS)
    # 0 -> 100 is exactly the limit (interpolated); 100 -> 250 is over it (a joint gap);
    # 350 / -100 are exactly the limit away from the ends, 351 / -101 beyond it
    assert s.reason.tolist() == ['', 'joint_gap', '', 'no_joint_state', '', 'no_joint_state']
    assert s.valid.tolist() == [True, False, True, False, True, False]
    assert s.q[0, 2] == pytest.approx(0.5)


def test_continuous_joint_unwraps_over_several_turns() -> None:
    # joint_3 (continuous) turns steadily by +2 rad per message; the messages report it wrapped
    true = np.arange(6) * 2.0
    wrapped = (true + np.pi) % (2 * np.pi) - np.pi
    track = _track([0, 10, 20, 30, 40, 50], wrapped.tolist())
    s = track.sample(np.array([5, 25, 45]) * MS, 100 * MS)
    np.testing.assert_allclose(s.q[:, 2], [1.0, 5.0, 9.0], atol=1e-12)  # midpoints, unwrapped
    # the finite-difference velocity follows the unwrapped angle: 2 rad per 10 ms
    np.testing.assert_allclose(s.dq[:, 2], 200.0)
    assert s.velocity_source == 'finite_difference'


def test_non_continuous_joint_is_not_unwrapped() -> None:
    track = JointTrack(NAMES)
    for t, v in ((0, 3.0), (10, -3.0)):
        track.add(t * MS, list(NAMES), [0.0, v, 0.0, 0.0, 0.0, 0.0, 0.0], [])
    s = track.sample(np.array([5 * MS]), 100 * MS)
    assert s.q[0, 1] == pytest.approx(0.0)  # joint_2 has limits: straight through 0


def test_repeated_stamp_keeps_the_newer_message_and_partial_velocity() -> None:
    track = JointTrack(NAMES)
    track.add(0, list(NAMES), [0.0] * 7, [1.0] * 7)
    track.add(10 * MS, list(NAMES), [5.0] * 7, [1.0] * 7)
    track.add(10 * MS, list(NAMES), [1.0] * 7, [])  # same stamp, no velocities: replaces it
    assert len(track) == 2
    s = track.sample(np.array([10 * MS]), 100 * MS)
    assert s.q[0, 1] == pytest.approx(1.0)
    # one message lacks velocities: every velocity comes from finite differences
    assert s.velocity_source == 'finite_difference' and s.dq[0, 1] == pytest.approx(100.0)


def test_split_segments_at_exactly_the_gap_does_not_split() -> None:
    stamps = np.array([0, 10, 20, 31])
    assert split_segments(stamps, 10) == [slice(0, 3), slice(3, 4)]
    assert split_segments(stamps, 11) == [slice(0, 4)]
    assert split_segments(np.array([7]), 1) == [slice(0, 1)]


def test_rebase_continuous_of_nothing_and_of_negative_turns() -> None:
    assert rebase_continuous(np.zeros((0, 7)), np.ones(7, bool)).shape == (0, 7)
    q = np.array([[-7.0, -7.0], [-6.5, -6.5]])
    out = rebase_continuous(q, np.array([True, False]))
    np.testing.assert_allclose(out[:, 0], q[:, 0] + 2 * math.pi)  # first frame in [-pi, pi)
    np.testing.assert_allclose(out[:, 1], q[:, 1])


def test_tf_repeats_out_of_order_and_static_updates() -> None:
    tf = TfBuffer()
    unit = (0.0, 0.0, 0.0, 1.0)
    tf.add('base_link', 'ee', 100, (1.0, 0.0, 0.0), unit, static=False)
    tf.add('base_link', 'ee', 100, (2.0, 0.0, 0.0), unit, static=False)  # same stamp: newer wins
    tf.add('base_link', 'ee', 50, (9.0, 0.0, 0.0), unit, static=False)  # older: ignored
    poses, ok = tf.lookup('base_link', 'ee', np.array([100, 150, 151]), 50)
    assert ok.tolist() == [True, True, False]  # one sample: valid within the gap of it
    np.testing.assert_allclose(poses[:2, 0, 3], [2.0, 2.0])
    tf.add('/ee', 'tool', 0, (0.0, 0.0, 1.0), unit, static=True)
    tf.add('ee', 'tool', 5, (0.0, 0.0, 3.0), unit, static=True)  # a static edge is replaced
    poses, ok = tf.lookup('base_link', 'tool', np.array([100]), 50)
    assert ok.tolist() == [True]
    np.testing.assert_allclose(poses[0, :3, 3], [2.0, 0.0, 3.0])
    assert tf.frames() == ['base_link', 'ee', 'tool'] and len(tf) == 2


def test_tf_chain_with_a_cycle_is_not_connected() -> None:
    tf = TfBuffer()
    unit = (0.0, 0.0, 0.0, 1.0)
    tf.add('a', 'b', 0, (0.0, 0.0, 0.0), unit, static=True)
    tf.add('b', 'a', 0, (0.0, 0.0, 0.0), unit, static=True)
    assert tf.chain('base_link', 'a') is None
    assert tf.chain('a', 'a') == []


def test_tf_interpolates_between_samples_and_checks_gaps() -> None:
    tf = TfBuffer()
    s = math.sin(math.pi / 4)
    tf.add('base_link', 'ee', 0, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0), static=False)
    tf.add('base_link', 'ee', 100, (4.0, 0.0, 0.0), (0.0, 0.0, s, s), static=False)
    tf.add('base_link', 'ee', 400, (4.0, 0.0, 0.0), (0.0, 0.0, s, s), static=False)
    poses, ok = tf.lookup('base_link', 'ee', np.array([25, 50, 250, -100, -101]), 100)
    assert ok.tolist() == [True, True, False, True, False]  # 100 -> 400 is a gap
    np.testing.assert_allclose(poses[:2, 0, 3], [1.0, 2.0])
    np.testing.assert_allclose(poses[1, :3, :3] @ [1.0, 0, 0], [s, s, 0.0], atol=1e-12)  # 45 deg
    np.testing.assert_allclose(poses[3, :3, 3], [0.0, 0.0, 0.0])  # held, not extrapolated
