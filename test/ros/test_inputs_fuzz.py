"""
Fuzz tests of the node's input path (hypothesis): hostile joint states and image messages.

``JointStateReader`` gets sequences of real ``sensor_msgs/JointState`` messages, valid ones
interleaved with broken ones (NaN/inf, missing, duplicate and extra names, position lists
longer or shorter than the names, any velocity/effort lengths, values far outside the joint
limits). Each message gives either the 7 arm positions in checkpoint order or an error that
names the topic and the joint or field; a valid message after bad ones is accepted again.
``rgb_sample`` / ``depth_sample`` get real ``Image`` / ``CompressedImage`` messages with any
encoding, sizes and payload: a decoded array of the message's shape or an error naming the
topic, never an exception out of the subscription callback.
"""

from typing import NamedTuple

from helpers import bounded
from hypothesis import given, HealthCheck, settings
from hypothesis import strategies as st
from kinova_policy_ros.ros.inputs import depth_sample, JointStateReader, rgb_sample
import numpy as np
from sensor_msgs.msg import CompressedImage, Image, JointState

CASES = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
TOPIC = '/joint_states'
ARM = tuple(f'joint_{i}' for i in range(1, 8))
OTHERS = ('finger_joint', 'right_finger_joint', 'wheel')
KINDS = ('valid', 'nonfinite', 'missing', 'duplicate', 'short', 'long', 'far')


class Case(NamedTuple):
    """One message and what the reader must make of it."""

    msg: JointState
    q: np.ndarray | None  # the expected arm positions, or None: an error
    names_in_error: tuple[str, ...]  # what the error must name (a joint or a field)


@st.composite
def joint_messages(draw: st.DrawFn) -> Case:
    """Draw a JointState of one kind (valid or one defect) and its expected outcome."""
    kind = draw(st.sampled_from(KINDS))
    extra = draw(st.lists(st.sampled_from(OTHERS), unique=True, max_size=3))
    names = [*ARM, *extra]
    limit = 1e6 if kind == 'far' else 10.0
    values = draw(
        st.lists(st.floats(-limit, limit), min_size=len(names), max_size=len(names))
    )
    order = draw(st.permutations(range(len(names))))
    names, values = [names[i] for i in order], [values[i] for i in order]
    expected: np.ndarray | None = np.array([values[names.index(n)] for n in ARM])
    must_name: tuple[str, ...] = ()
    if kind == 'nonfinite':
        joint = draw(st.sampled_from(ARM))
        values[names.index(joint)] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        expected, must_name = None, (joint,)
    elif kind == 'missing':
        at = names.index(draw(st.sampled_from(ARM)))
        must_name = (names[at],)
        del names[at], values[at]
        expected = None
    elif kind == 'duplicate':
        joint = draw(st.sampled_from(ARM))
        names.insert(draw(st.integers(0, len(names))), joint)
        values.append(draw(st.floats(-10.0, 10.0)))
        expected, must_name = None, (joint,)
    elif kind in ('short', 'long'):
        n = draw(st.integers(0, len(names) - 1) if kind == 'short' else st.integers(1, 4))
        values = values[:n] if kind == 'short' else values + [0.0] * n
        expected, must_name = None, ('position',)
    msg = JointState()
    msg.name = names
    msg.position = values
    # Velocities and efforts are not read: any length is accepted, whatever they hold.
    msg.velocity = draw(st.lists(st.floats(), max_size=len(names) + 2))
    msg.effort = draw(st.lists(st.floats(), max_size=len(names) + 2))
    return Case(msg, expected, must_name)


def _valid_message(q: np.ndarray) -> JointState:
    msg = JointState()
    msg.name = ['finger_joint', *reversed(ARM)]
    msg.position = [0.5, *reversed(q.tolist())]
    return msg


@CASES
@given(st.lists(joint_messages(), min_size=1, max_size=8))
def test_joint_states_give_arm_positions_or_name_the_joint(cases: list[Case]) -> None:
    """Each message alone decides its outcome; a valid message after bad ones is accepted."""
    reader = JointStateReader(ARM, TOPIC)
    for stamp, case in enumerate(cases, start=1):
        with bounded():
            sample = reader.sample(case.msg, stamp)
        assert sample.stamp_ns == stamp
        if case.q is None:
            assert sample.value is None
            assert sample.error.startswith(f'{TOPIC}: ')
            for word in case.names_in_error:
                assert word in sample.error, (word, sample.error)
        else:
            assert sample.error == ''
            assert sample.value is not None and sample.value.shape == (7,)
            np.testing.assert_array_equal(sample.value, case.q)
    q = np.linspace(-1.0, 1.0, 7)
    recovered = reader.sample(_valid_message(q), len(cases) + 1)
    assert recovered.error == ''
    np.testing.assert_array_equal(recovered.value, q)


def test_duplicate_arm_joint_is_an_error_naming_it() -> None:
    """Regression: a repeated arm joint silently took the last of its positions."""
    msg = JointState()
    msg.name = [*ARM, 'joint_3']
    msg.position = [0.0] * 7 + [2.0]
    sample = JointStateReader(ARM, TOPIC).sample(msg, 1)
    assert sample.value is None
    assert sample.error == f"{TOPIC}: duplicate joints ['joint_3'] (message has {list(msg.name)})"


ENCODINGS = st.one_of(
    st.sampled_from(['rgb8', 'bgr8', 'rgba8', 'mono8', '16UC1', '32FC1', 'yuv422', '']),
    st.text(max_size=8),
)


@st.composite
def image_messages(draw: st.DrawFn) -> Image:
    """Draw a real Image: any encoding, sizes (zero, huge) and payload length."""
    msg = Image()
    msg.height = draw(st.one_of(st.integers(0, 5), st.sampled_from([2**31, 2**32 - 1])))
    msg.width = draw(st.one_of(st.integers(0, 5), st.sampled_from([2**31, 2**32 - 1])))
    msg.encoding = draw(ENCODINGS)
    msg.is_bigendian = draw(st.integers(0, 1))
    msg.step = draw(st.one_of(st.integers(0, 24), st.sampled_from([2**32 - 1])))
    claimed = msg.height * msg.step
    length = draw(st.one_of(st.integers(0, 64), st.just(claimed if claimed < 4096 else 0)))
    msg.data = draw(st.binary(min_size=length, max_size=length))
    return msg


@CASES
@given(image_messages(), st.binary(max_size=64), st.text(max_size=12))
def test_image_samples_hold_a_shaped_array_or_the_error(
    msg: Image, packed: bytes, fmt: str
) -> None:
    """The subscription callbacks never raise: value of the message's shape, or an error."""
    with bounded():
        samples = [
            ('rgb', rgb_sample(msg, 3, '/rgb')),
            ('depth', depth_sample(msg, 3, '/depth')),
            ('packed', rgb_sample(CompressedImage(format=fmt, data=packed), 3, '/rgb')),
        ]
    for kind, sample in samples:
        assert sample.stamp_ns == 3
        if sample.value is None:
            assert sample.error.startswith(('/rgb: ', '/depth: ')), sample.error
            continue
        assert sample.error == ''
        if kind == 'rgb':
            assert sample.value.shape == (msg.height, msg.width, 3)
        elif kind == 'depth':
            assert sample.value.shape == (msg.height, msg.width)
            assert np.all(np.isfinite(sample.value)) and np.all(sample.value >= 0.0)
