"""The joint_trajectory_controller rules of ``sim.trajectory`` (docs/controller.md), one by one."""

from kinova_policy_ros.core import kinematics as kin
from kinova_policy_ros.sim.trajectory import (
    TrajectoryCommand,
    TrajectoryFollower,
    TrajectoryRejected,
)
import numpy as np
import pytest

NAMES = list(kin.JOINT_NAMES)
S = 1_000_000_000  # ns per second
T0 = 100 * S  # "now" when the command arrives


def _cmd(times, positions, velocities=None, names=NAMES, stamp_ns=0) -> TrajectoryCommand:
    return TrajectoryCommand(
        joint_names=names,
        time_from_start=list(times),
        positions=[list(p) for p in positions],
        velocities=None if velocities is None else [list(v) for v in velocities],
        stamp_ns=stamp_ns,
    )


def _accept(follower, cmd, q=None, dq=None, now=T0):
    q = np.zeros(7) if q is None else q
    dq = np.zeros(7) if dq is None else dq
    return follower.set_trajectory(cmd, now, q, dq)


def test_starts_from_the_measured_state_and_interpolates_linearly():
    f = TrajectoryFollower()
    q_meas = np.full(7, 0.2)
    _accept(f, _cmd([1.0, 2.0], [np.full(7, 1.2), np.full(7, 2.2)]), q=q_meas)
    np.testing.assert_allclose(f.sample(T0)[0], q_meas)  # stamp 0: starts now, at the state
    q, dq = f.sample(T0 + S // 2)
    np.testing.assert_allclose(q, 0.7)  # halfway between measured state and point 0
    np.testing.assert_allclose(dq, 1.0)
    np.testing.assert_allclose(f.sample(T0 + 3 * S // 2)[0], 1.7)
    assert not f.done(T0 + S)


def test_holds_the_last_point_after_the_end():
    f = TrajectoryFollower(allow_nonzero_velocity_at_trajectory_end=True)  # Humble's default
    _accept(f, _cmd([0.5], [np.full(7, 0.3)], [np.full(7, 0.4)]))
    q, dq = f.sample(T0 + 5 * S)
    np.testing.assert_allclose(q, 0.3)
    np.testing.assert_allclose(dq, 0.0)
    assert f.done(T0 + S)


def test_cubic_through_positions_and_velocities():
    f = TrajectoryFollower(allow_nonzero_velocity_at_trajectory_end=True)
    times = np.arange(1, 11) / 10
    pos = np.sin(times)[:, None] * np.ones(7)
    vel = np.cos(times)[:, None] * np.ones(7)
    _accept(f, _cmd(times, pos, vel), q=np.full(7, np.sin(0.0)), dq=np.full(7, np.cos(0.0)))
    for t in np.linspace(0.0, 0.99, 34):  # at 1.0 the controller holds (velocity 0)
        q, dq = f.sample(T0 + round(t * S))
        np.testing.assert_allclose(q, np.sin(t), atol=2e-4)
        np.testing.assert_allclose(dq, np.cos(t), atol=5e-3)
    # passes exactly through every point with its velocity
    for t, p, v in zip(times[:-1], pos, vel):
        q, dq = f.sample(T0 + round(t * S))
        np.testing.assert_allclose(q, p, atol=1e-9)
        np.testing.assert_allclose(dq, v, atol=1e-6)


def test_positions_only_give_velocity_steps_at_points():
    f = TrajectoryFollower()
    _accept(f, _cmd([1.0, 2.0], [np.full(7, 1.0), np.full(7, 3.0)]))
    _, before = f.sample(T0 + S - S // 100)
    _, after = f.sample(T0 + S + S // 100)
    np.testing.assert_allclose(before, 1.0)
    np.testing.assert_allclose(after, 2.0)


def test_maps_joints_by_name():
    f = TrajectoryFollower()
    order = [3, 0, 6, 1, 5, 2, 4]
    target = np.arange(7) * 0.1
    names = [NAMES[i] for i in order]
    _accept(f, _cmd([1.0], [target[order]], names=names))
    np.testing.assert_allclose(f.sample(T0 + 2 * S)[0], target)


def test_new_message_replaces_the_running_one_from_the_measured_state():
    f = TrajectoryFollower()
    _accept(f, _cmd([1.0], [np.full(7, 1.0)]))
    q_mid = f.sample(T0 + S // 2)[0]
    measured = q_mid + 0.01  # the robot lags a little
    _accept(f, _cmd([1.0], [np.full(7, -1.0)]), q=measured, now=T0 + S // 2)
    np.testing.assert_allclose(f.sample(T0 + S // 2)[0], measured)  # no jump to the old plan
    np.testing.assert_allclose(f.sample(T0 + 2 * S)[0], -1.0)
    assert f.accepted == 2


@pytest.mark.parametrize(
    ('cmd', 'reason'),
    [
        (_cmd([1.0], [np.zeros(7)], names=[]), 'empty joint_names'),
        (_cmd([1.0], [np.zeros(6)], names=NAMES[:6]), r"missing \['joint_7'\]"),
        (_cmd([1.0], [np.zeros(8)], names=[*NAMES, 'finger_joint']), 'unknown'),
        (_cmd([1.0], [np.zeros(7)], names=[*NAMES[:6], 'joint_1']), 'duplicated'),
        (_cmd([], []), 'no points'),
        (_cmd([1.0, 1.0], [np.zeros(7), np.ones(7)]), 'strictly increase'),
        (_cmd([1.0, 0.5], [np.zeros(7), np.ones(7)]), 'strictly increase'),
        (_cmd([1.0], [np.zeros(6)]), 'point 0 has 6 positions'),
        (_cmd([1.0], [np.zeros(7)], [np.zeros(5)]), 'point 0 has 5 velocities'),
        (_cmd([1.0, 2.0], [np.zeros(7), np.ones(7)], [np.zeros(7)]), '1 velocity rows'),
        (_cmd([1.0], [np.full(7, np.nan)]), 'non-finite'),
        (_cmd([1.0], [np.zeros(7)], [np.full(7, np.inf)]), 'non-finite'),
        (_cmd([1.0], [np.zeros(7)], stamp_ns=T0 - 5 * S), 'end in the past'),
    ],
)
def test_rejections_name_the_reason_and_keep_the_running_trajectory(cmd, reason):
    f = TrajectoryFollower()
    _accept(f, _cmd([1.0], [np.full(7, 0.5)]))
    with pytest.raises(TrajectoryRejected, match=reason):
        _accept(f, cmd, now=T0 + S // 2)
    assert f.rejected == 1 and f.accepted == 1
    assert f.last_rejection.startswith('rejected: ')
    np.testing.assert_allclose(f.sample(T0 + 2 * S)[0], 0.5)  # still the accepted one


def test_stamp_in_the_past_skips_into_the_trajectory():
    f = TrajectoryFollower()
    times = [1.0, 2.0, 3.0]
    pos = [np.full(7, 1.0), np.full(7, 2.0), np.full(7, 3.0)]
    # stamped 1.5 s before arrival: the controller is already between points 0 and 1
    _accept(f, _cmd(times, pos, stamp_ns=T0 - 3 * S // 2), q=np.zeros(7))
    np.testing.assert_allclose(f.sample(T0)[0], 1.5)  # a jump away from the measured 0


def test_stamp_in_the_future_holds_until_start():
    f = TrajectoryFollower()
    _accept(f, _cmd([1.0], [np.full(7, 1.0)], stamp_ns=T0 + S), q=np.full(7, 0.1))
    np.testing.assert_allclose(f.sample(T0 + S // 2)[0], 0.1)
    np.testing.assert_allclose(f.sample(T0 + S + S // 2)[0], 0.55)
    np.testing.assert_allclose(f.sample(T0 + 3 * S)[0], 1.0)


def test_continuous_joints_humble_turns_jazzy_wraps():
    measured = kin.HOME.copy()
    measured[2] = -np.pi + 0.05  # wrapped joint_3 near home
    cmd = _cmd([1.0], [kin.HOME])  # unwrapped command, 2π - 0.05 away on joint_3
    humble = TrajectoryFollower()
    _accept(humble, cmd, q=measured)
    mid = humble.sample(T0 + S // 2)[0]
    assert mid[2] == pytest.approx((measured[2] + np.pi) / 2, abs=1e-9)  # sweeps through 0
    jazzy = TrajectoryFollower(angle_wraparound=True)
    _accept(jazzy, cmd, q=measured)
    end = jazzy.sample(T0 + 2 * S)[0]
    assert end[2] == pytest.approx(-np.pi, abs=1e-9)  # the short way: 0.05 rad
    np.testing.assert_allclose(np.delete(end, 2), np.delete(kin.HOME, 2))


def test_nothing_accepted_samples_none():
    f = TrajectoryFollower()
    assert f.sample(T0) is None and f.done(T0)
    _accept(f, _cmd([1.0], [np.ones(7)]))
    f.reset()
    assert f.sample(T0) is None


def test_nonzero_velocity_at_the_end_is_rejected_by_default_like_jazzy():
    f = TrajectoryFollower()
    _accept(f, _cmd([0.5], [np.full(7, 0.2)], [np.zeros(7)]))
    with pytest.raises(TrajectoryRejected, match='last point has a non-zero velocity'):
        f.set_trajectory(
            _cmd([0.5], [np.full(7, 0.3)], [np.full(7, 0.4)]), T0, np.zeros(7), np.zeros(7)
        )
    assert f.rejected == 1
    np.testing.assert_allclose(f.sample(T0 + 5 * S)[0], 0.2)  # the running one continues
    humble = TrajectoryFollower(allow_nonzero_velocity_at_trajectory_end=True)
    _accept(humble, _cmd([0.5], [np.full(7, 0.3)], [np.full(7, 0.4)]))
    assert humble.accepted == 1


def test_interpolate_from_desired_state_starts_from_the_running_command():
    measured = np.full(7, 0.05)
    desired = TrajectoryFollower(interpolate_from_desired_state=True)
    default = TrajectoryFollower()
    for f in (desired, default):
        f.set_trajectory(_cmd([1.0], [np.full(7, 1.0)]), T0, np.zeros(7), np.zeros(7))
        # half-way through the first (linear) trajectory: commanded 0.5 at 1 rad/s
        f.set_trajectory(_cmd([1.0], [np.full(7, 2.0)]), T0 + S // 2, measured, np.zeros(7))
    q, dq = desired.sample(T0 + S // 2)
    np.testing.assert_allclose(q, 0.5)
    np.testing.assert_allclose(dq, 1.5)  # positions only: linear from 0.5 to 2.0 in 1 s
    q, dq = default.sample(T0 + S // 2)
    np.testing.assert_allclose(q, measured)
    np.testing.assert_allclose(dq, 1.95)
