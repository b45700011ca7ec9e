"""Tests of kinova_policy_ros.ros.inputs: decoding, joint selection, the newest-sample buffer."""

from kinova_policy_ros.core import image_codec
from kinova_policy_ros.data.preprocess import fit_stream
from kinova_policy_ros.ros.diagnostics import INVALID, RUNNING, STALE, WAITING
from kinova_policy_ros.ros.inputs import (
    CLOCK_BACK_TOLERANCE_NS,
    depth_sample,
    InputBuffer,
    JointStateReader,
    REORDER_WINDOW_NS,
    rgb_sample,
    Sample,
)
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image, JointState

RGB_TOPIC = '/cam/rgb'
DEPTH_TOPIC = '/cam/depth'
JOINTS_TOPIC = '/joint_states'
LABELS = (RGB_TOPIC, DEPTH_TOPIC, JOINTS_TOPIC)
ARM = tuple(f'joint_{i}' for i in range(1, 8))
Q = np.array([0.1, 0.3, -3.0, -2.2, 0.05, 0.9, 1.5])
S = 1_000_000_000  # one second in ns


def _rgb_array() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)


def _image(fields: image_codec.ImageFields) -> Image:
    return image_codec.fill_image_msg(Image(), fields)


def _joint_state(names: list[str], positions: list[float]) -> JointState:
    msg = JointState()
    msg.name = names
    msg.position = positions
    return msg


def _shuffled(q: np.ndarray) -> JointState:
    names = [*ARM, 'finger_joint', 'right_finger_joint']  # 9 joints
    values = [*q.tolist(), 0.7, 0.8]
    order = [8, 3, 0, 6, 1, 5, 2, 7, 4]
    return _joint_state([names[i] for i in order], [values[i] for i in order])


# ---------------------------------------------------------------------------------- decoding


def test_rgb_sample_decodes_raw_and_compressed_frames():
    frame = _rgb_array()
    raw = rgb_sample(_image(image_codec.encode_rgb8(frame)), 5, RGB_TOPIC)
    assert raw.stamp_ns == 5 and raw.error == ''
    np.testing.assert_array_equal(raw.value, frame)
    fmt, data = image_codec.encode_compressed_rgb(frame, 'png')
    packed = rgb_sample(CompressedImage(format=fmt, data=data), 6, RGB_TOPIC)
    assert packed.stamp_ns == 6 and packed.error == ''
    np.testing.assert_array_equal(packed.value, frame)


def test_rgb_sample_of_a_bad_message_names_the_topic():
    msg = _image(image_codec.encode_rgb8(_rgb_array()))
    msg.encoding = 'yuv422'
    sample = rgb_sample(msg, 7, RGB_TOPIC)
    assert sample.value is None and sample.stamp_ns == 7
    assert sample.error.startswith(f'{RGB_TOPIC}: ') and 'yuv422' in sample.error
    broken = CompressedImage(format='png', data=b'not a png')
    assert rgb_sample(broken, 8, RGB_TOPIC).error.startswith(f'{RGB_TOPIC}: ')


def test_depth_sample_gives_metres_and_zero_for_invalid_depth():
    depth = np.full((4, 5), 1.25, np.float32)
    depth[1, 2] = np.nan
    depth[3, 0] = np.inf
    sample = depth_sample(_image(image_codec.encode_depth(depth, '32FC1')), 9, DEPTH_TOPIC)
    assert sample.error == '' and sample.value is not None
    assert sample.value.dtype == np.float32
    assert sample.value[1, 2] == 0.0 and sample.value[3, 0] == 0.0
    assert np.count_nonzero(sample.value == np.float32(1.25)) == depth.size - 2
    mm = depth_sample(_image(image_codec.encode_depth(np.full((4, 5), 0.5), '16UC1')), 1, 'd')
    np.testing.assert_allclose(mm.value, 0.5)


def test_depth_sample_of_a_colour_image_names_the_topic_and_the_encoding():
    sample = depth_sample(_image(image_codec.encode_rgb8(_rgb_array())), 3, DEPTH_TOPIC)
    assert sample.value is None
    assert sample.error.startswith(f'{DEPTH_TOPIC}: ') and 'rgb8' in sample.error


def _padded(encoding: str, pixels: np.ndarray, pad: int) -> Image:
    """Return an rclpy Image of ``pixels`` (stored channels), ``pad`` bytes after every row."""
    h, w = pixels.shape[:2]
    rows = np.ascontiguousarray(pixels).view(np.uint8).reshape(h, -1)
    rows = np.concatenate([rows, np.full((h, pad), 0xCD, np.uint8)], axis=1)
    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=0, step=rows.shape[1])
    msg.data = rows.tobytes()
    return msg


@pytest.mark.parametrize('pad', [0, 5])
@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8'])
def test_every_colour_encoding_a_camera_sends_reaches_the_model_input(encoding, pad):
    # The node's path: rclpy Image -> rgb_sample -> fit_stream (the model input).
    rgb = np.random.default_rng(3).integers(0, 256, (9, 16, 3), dtype=np.uint8)
    if encoding == 'mono8':
        rgb[...] = rgb[..., :1]
    alpha = np.full((9, 16, 1), 77, np.uint8)
    stored = {
        'rgb8': rgb,
        'bgr8': rgb[..., ::-1],
        'rgba8': np.concatenate([rgb, alpha], axis=2),
        'bgra8': np.concatenate([rgb[..., ::-1], alpha], axis=2),
        'mono8': rgb[..., 0],
    }[encoding]
    sample = rgb_sample(_padded(encoding, stored, pad), 1, RGB_TOPIC)
    assert sample.error == '' and sample.value is not None
    np.testing.assert_array_equal(sample.value, rgb)
    model = fit_stream(sample.value, (6, 8), 'rgb')  # 16x9 -> the centred 12x9 box -> 8x6
    by_hand = fit_stream(np.ascontiguousarray(rgb[:, 2:14]), (6, 8), 'rgb')
    np.testing.assert_array_equal(model, by_hand)


@pytest.mark.parametrize('fmt', ['jpeg', 'png'])
def test_compressed_colour_reaches_the_model_input(fmt):
    rgb = np.zeros((18, 32, 3), np.uint8)
    rgb[:, :, 0] = 200  # flat red: jpeg keeps it within a few levels
    payload_fmt, data = image_codec.encode_compressed_rgb(rgb, fmt)
    sample = rgb_sample(CompressedImage(format=payload_fmt, data=data), 2, RGB_TOPIC)
    assert sample.error == '' and sample.value is not None and sample.value.shape == (18, 32, 3)
    model = fit_stream(sample.value, (6, 8), 'rgb').astype(int)
    assert np.all(np.abs(model - [200, 0, 0]) <= (0 if fmt == 'png' else 4))


@pytest.mark.parametrize('pad', [0, 6])
def test_depth_encodings_with_padded_rows_give_metres_and_zero_for_no_reading(pad):
    mm = np.array([[0, 500, 1250, 65535]] * 3, np.uint16)
    sample = depth_sample(_padded('16UC1', mm, pad), 1, DEPTH_TOPIC)
    assert sample.error == '' and sample.value is not None
    np.testing.assert_allclose(sample.value, mm * 0.001, rtol=1e-6)
    metres = np.array([[np.nan, 0.5, 1.25, -1.0]] * 3, np.float32)  # NaN: no reading
    sample = depth_sample(_padded('32FC1', metres, pad), 2, DEPTH_TOPIC)
    assert sample.error == '' and sample.value is not None
    np.testing.assert_array_equal(sample.value, np.nan_to_num(np.clip(metres, 0, None)))
    model = fit_stream(sample.value, (3, 4), 'depth')
    assert np.all(np.isfinite(model)) and model[0, 0] == 0.0


# ------------------------------------------------------------------------------ joint states


def test_joint_reader_picks_the_arm_joints_in_checkpoint_order():
    reader = JointStateReader(ARM, JOINTS_TOPIC)
    sample = reader.sample(_shuffled(Q), 11)
    assert sample.error == '' and sample.stamp_ns == 11
    assert sample.value is not None and sample.value.dtype == np.float64
    np.testing.assert_array_equal(sample.value, Q)


def test_joint_reader_caches_the_index_of_a_name_order():
    reader = JointStateReader(ARM, JOINTS_TOPIC)
    names = tuple(_shuffled(Q).name)
    first = reader.index_for(names)
    assert reader.index_for(names) is first
    other = reader.index_for(ARM)
    assert other is not first and other.tolist() == list(range(7))
    assert reader.index_for(names) is not first  # only the last order is cached
    np.testing.assert_array_equal(reader.index_for(names), first)


@pytest.mark.parametrize(
    ('names', 'positions', 'match'),
    [
        ([*ARM[:5], 'joint_7'], [0.0] * 6, "missing joints ['joint_6']"),
        (list(ARM), [0.0] * 6, '7 names but 6 positions'),
        (list(ARM), [0.0, 0.0, 0.0, np.nan, 0.0, np.inf, 0.0], 'non-finite position for '),
    ],
    ids=['missing', 'short', 'nan'],
)
def test_joint_reader_errors_name_the_topic_and_the_problem(names, positions, match):
    sample = JointStateReader(ARM, JOINTS_TOPIC).sample(_joint_state(names, positions), 4)
    assert sample.value is None and sample.stamp_ns == 4
    assert sample.error.startswith(f'{JOINTS_TOPIC}: ') and match in sample.error
    if match.startswith('non-finite'):
        assert sample.error.endswith('joint_4, joint_6')


# ------------------------------------------------------------------------------------ buffer


def _filled(stamp_ns: int = 10 * S) -> InputBuffer:
    buf = InputBuffer(LABELS)
    buf.put_rgb(Sample(stamp_ns, _rgb_array(), ''))
    buf.put_depth(Sample(stamp_ns, np.ones((6, 8), np.float32), ''))
    buf.put_joints(Sample(stamp_ns, Q.copy(), ''))
    return buf


def test_empty_buffer_waits_for_every_input():
    state, detail, obs = InputBuffer(LABELS).check(10 * S, 0.2)
    assert state == WAITING and obs is None
    assert detail == f'no message yet (or since the reset) on {", ".join(LABELS)}'


def test_fresh_inputs_make_an_observation():
    buf = _filled()
    state, detail, obs = buf.check(10 * S + S // 10, 0.2)
    assert (state, detail) == (RUNNING, '')
    assert obs is not None
    samples = buf.samples()
    assert obs.rgb is samples.rgb.value and obs.depth is samples.depth.value
    np.testing.assert_array_equal(obs.q, Q)


def test_an_old_input_is_stale_and_named_with_its_age():
    buf = _filled()
    buf.put_rgb(Sample(9 * S, _rgb_array(), ''))
    state, detail, obs = buf.check(10 * S, 0.2)
    assert state == STALE and obs is None
    assert detail == f'older than max_obs_age_s=0.2: {RGB_TOPIC} (1.000 s old)'
    # exactly max_obs_age_s old is still fresh
    assert buf.check(9 * S + S // 5, 0.2)[0] == RUNNING


def test_errors_win_over_everything_and_are_joined():
    buf = InputBuffer(LABELS)
    buf.put_depth(Sample(1, None, f'{DEPTH_TOPIC}: bad'))
    buf.put_joints(Sample(1, None, f'{JOINTS_TOPIC}: worse'))
    state, detail, obs = buf.check(100 * S, 0.2)
    assert state == INVALID and obs is None
    assert detail == f'{DEPTH_TOPIC}: bad; {JOINTS_TOPIC}: worse'


def test_reset_request_forgets_the_frames_and_is_taken_once():
    buf = _filled()
    assert not buf.take_reset_request()
    buf.request_reset()
    state, detail, _ = buf.check(10 * S, 0.2)
    assert state == WAITING
    assert RGB_TOPIC in detail and DEPTH_TOPIC in detail and JOINTS_TOPIC not in detail
    assert buf.samples().joints.value is not None  # the joint state is still current
    assert buf.take_reset_request()
    assert not buf.take_reset_request()


# ------------------------------------------------------------- order of stamps, clock jumps


def _stamped(receipt_ns: int, header_ns: int, q: float = 0.0) -> Sample:
    return Sample(receipt_ns, Q + q, '', header_ns)


def test_a_message_older_than_the_held_one_is_dropped_within_the_window():
    buf = _filled()
    assert buf.put_joints(_stamped(10 * S, 5 * S, q=0.1))
    # reordered: an older stamp received after the newer one (later receipt) is dropped
    assert not buf.put_joints(_stamped(10 * S + 1, 4 * S, q=0.2))
    assert buf.dropped == [0, 0, 1]
    np.testing.assert_array_equal(buf.samples().joints.value, Q + 0.1)
    # the same stamp again (a duplicate) and unstamped messages are kept
    assert buf.put_joints(_stamped(10 * S + 2, 5 * S, q=0.3))
    assert buf.put_joints(_stamped(10 * S + 3, 0, q=0.4))
    np.testing.assert_array_equal(buf.samples().joints.value, Q + 0.4)


def test_an_older_stamp_is_kept_after_the_window_or_when_the_receipt_clock_went_back():
    buf = _filled()
    assert buf.put_rgb(_stamped(10 * S, 5 * S))
    late = 10 * S + REORDER_WINDOW_NS
    assert not buf.put_rgb(Sample(late, _rgb_array(), '', 1 * S))
    assert buf.put_rgb(Sample(late + 1, _rgb_array(), '', 1 * S))  # the stream restarted
    assert buf.put_depth(Sample(10 * S, np.ones((6, 8), np.float32), '', 5 * S))
    assert buf.put_depth(Sample(3 * S, np.ones((6, 8), np.float32), '', 1 * S))  # clock back
    assert buf.dropped == [1, 0, 0]


def test_a_newer_invalid_message_is_not_replaced_by_an_older_valid_one():
    buf = _filled()
    assert buf.put_depth(Sample(10 * S, None, f'{DEPTH_TOPIC}: bad', 5 * S))
    assert not buf.put_depth(Sample(10 * S + 1, np.ones((6, 8), np.float32), '', 4 * S))
    assert buf.check(10 * S + 2, 0.2)[0] == INVALID


def test_samples_carry_the_header_stamp():
    msg = _joint_state(list(ARM), Q.tolist())
    msg.header.stamp.sec, msg.header.stamp.nanosec = 7, 5
    assert JointStateReader(ARM, JOINTS_TOPIC).sample(msg, 9).header_ns == 7 * S + 5
    bad = _joint_state(list(ARM[:6]), Q[:6].tolist())
    bad.header.stamp.sec = 3
    assert JointStateReader(ARM, JOINTS_TOPIC).sample(bad, 9).header_ns == 3 * S
    image = _image(image_codec.encode_rgb8(_rgb_array()))
    image.header.stamp.sec = 2
    assert rgb_sample(image, 1, RGB_TOPIC).header_ns == 2 * S
    image.encoding = 'nonsense'
    assert rgb_sample(image, 1, RGB_TOPIC).header_ns == 2 * S
    depth = _image(image_codec.encode_depth(np.ones((6, 8), np.float32)))
    depth.header.stamp.sec = 4
    assert depth_sample(depth, 1, DEPTH_TOPIC).header_ns == 4 * S


def test_a_sample_received_after_now_beyond_the_tolerance_is_stale():
    # use_sim_time and /clock jumped back by 100 s: the frames received before are not fresh.
    buf = _filled(110 * S)
    state, detail, obs = buf.check(10 * S, 0.2)
    assert state == STALE and obs is None
    assert detail.startswith('received after now (the clock went back): ')
    assert all(label in detail for label in LABELS) and '100.000 s' in detail
    # within the tolerance it is not (clock noise); fresh samples after the jump make it run
    assert buf.check(110 * S - CLOCK_BACK_TOLERANCE_NS, 0.2)[0] == RUNNING
    for put, value in ((buf.put_rgb, _rgb_array()), (buf.put_depth, np.ones((6, 8), np.float32))):
        put(Sample(10 * S, value, ''))
    state, detail, _ = buf.check(10 * S, 0.2)
    assert state == STALE and detail.endswith(f'{JOINTS_TOPIC} (100.000 s)')
    buf.put_joints(Sample(10 * S, Q.copy(), ''))
    assert buf.check(10 * S, 0.2)[0] == RUNNING
