"""The scripted DLS-IK expert: plans within the Gen3 limits and reaches seeded targets."""

from kinova_policy_ros.core import kinematics as kin
from kinova_policy_ros.core.errors import ConfigError
from kinova_policy_ros.sim.env import episode_spec, Gen3Sim, tcp_point
from kinova_policy_ros.sim.expert import (
    DemoVariation,
    draw_variation,
    ExpertConfig,
    plan_reach,
    rollout_expert,
    stop_plan,
)
from kinova_policy_ros.sim.mjcf import SceneConfig
import numpy as np
import pytest

TCP = ExpertConfig().tcp_offset


def _tcp(q: np.ndarray) -> np.ndarray:
    """Where the expert aims: FK + the TCP offset along the tool z."""
    return tcp_point(kin.fk_matrix(q), TCP)


@pytest.fixture(scope='module')
def sim():
    s = Gen3Sim(render=False)
    yield s
    s.close()


def test_plan_is_smooth_and_within_limits():
    cfg = ExpertConfig()
    scene = SceneConfig()
    for seed in range(10):
        spec = episode_spec(seed, scene, 0.1)
        q_meas = spec.q0.copy()
        q_meas[kin.CONTINUOUS] = kin.wrap_to_pi(q_meas[kin.CONTINUOUS])  # as the driver reports
        plan = plan_reach(q_meas, spec.target, cfg)
        assert (np.diff(plan.times) > 0).all() and plan.times[0] > 0
        assert np.isfinite(plan.positions).all() and np.isfinite(plan.velocities).all()
        # starts next to the measured (wrapped) state: no 2π turn for the controller
        assert np.abs(plan.positions[0] - q_meas).max() < 0.05
        assert (
            np.abs(plan.velocities) <= cfg.max_speed_fraction * kin.VELOCITY_LIMITS + 1e-9
        ).all()
        np.testing.assert_array_equal(plan.velocities[-1], 0.0)
        assert kin.within_limits(plan.positions).all()
        steps = np.abs(np.diff(plan.positions, axis=0)) / np.diff(plan.times)[:, None]
        assert (steps <= kin.VELOCITY_LIMITS).all()
        t_end = kin.fk_matrix(plan.positions[-1])
        assert np.linalg.norm(_tcp(plan.positions[-1]) - spec.target) < 0.005
        np.testing.assert_allclose(t_end[:3, 2], [0.0, 0.0, -1.0], atol=0.05)  # tool down


def test_expert_reaches_at_least_95_percent_of_seeded_targets(sim):
    results = [rollout_expert(sim, seed) for seed in range(100, 120)]
    rate = np.mean([r.success for r in results])
    assert rate >= 0.95, [(r.seed, r.final_distance) for r in results if not r.success]
    assert np.median([r.final_distance for r in results]) < 0.01


def test_rollout_calls_on_tick_with_simulated_time(sim):
    stamps: list[int] = []
    result = rollout_expert(sim, 3, on_tick=lambda s, now: stamps.append(now), settle_time=0.2)
    assert stamps[0] == 0 and (np.diff(stamps) > 0).all()
    assert stamps[-1] == pytest.approx(result.duration * 1e9, abs=1e3)


def test_demo_variation_validates_its_fields():
    with pytest.raises(ConfigError, match=r'DemoVariation\.recovery_fraction: must be in \[0, 1'):
        DemoVariation(recovery_fraction=1.5)
    with pytest.raises(ConfigError, match=r'DemoVariation\.pause_s: .*got \(1\.0, 0\.5\)'):
        DemoVariation(pause_s=(1.0, 0.5))
    with pytest.raises(ConfigError, match='recovery_offset_m'):
        DemoVariation(recovery_offset_m=-0.1)
    assert not DemoVariation().active and DemoVariation(pause_fraction=0.1).active
    with pytest.raises(ConfigError, match=r'DemoVariation\.recovery_tilt_deg: .*got 60\.0'):
        DemoVariation(recovery_tilt_deg=60.0)


def test_recovery_starts_are_near_the_target_tool_down_and_seeded():
    scene = SceneConfig()
    var = DemoVariation(recovery_fraction=1.0, pause_fraction=1.0)
    for seed in range(6):
        spec = episode_spec(seed, scene, 0.1)
        drawn = draw_variation(seed, spec.q0, spec.target, var)
        again = draw_variation(seed, spec.q0, spec.target, var)
        assert drawn.start_q is not None and again.start_q is not None
        np.testing.assert_array_equal(drawn.start_q, again.start_q)
        t = kin.fk_matrix(drawn.start_q)
        offset = _tcp(drawn.start_q) - spec.target
        assert np.linalg.norm(offset[:2]) <= var.recovery_offset_m + 0.01
        assert var.recovery_height_m[0] - 0.01 <= offset[2] <= var.recovery_height_m[1] + 0.01
        np.testing.assert_allclose(t[:3, 2], [0.0, 0.0, -1.0], atol=0.05)
        assert kin.within_limits(drawn.start_q).all()
        assert drawn.pause_at is not None and 0.15 <= drawn.pause_at <= 0.85
        assert var.pause_s[0] <= drawn.pause_s <= var.pause_s[1]
    none = draw_variation(0, spec.q0, spec.target, DemoVariation())
    assert none.start_q is None and none.pause_at is None


def test_tilted_recovery_starts_tilt_the_tool_and_leave_the_other_draws_alone():
    scene = SceneConfig()
    plain = DemoVariation(recovery_fraction=1.0, pause_fraction=1.0)
    tilted = DemoVariation(recovery_fraction=1.0, pause_fraction=1.0, recovery_tilt_deg=15.0)
    tilts = []
    for seed in range(8):
        spec = episode_spec(seed, scene, 0.1)
        a = draw_variation(seed, spec.q0, spec.target, plain)
        b = draw_variation(seed, spec.q0, spec.target, tilted)
        assert a.start_q is not None and b.start_q is not None
        z = kin.fk_matrix(b.start_q)[:3, 2]
        tilts.append(np.degrees(np.arccos(-z[2])))
        # the TCP is still at the drawn point near the target
        offset = _tcp(b.start_q) - spec.target
        assert np.linalg.norm(offset[:2]) <= tilted.recovery_offset_m + 0.01
        assert kin.within_limits(b.start_q).all()
        assert b.pause_s != a.pause_s or b.pause_at != a.pause_at  # drawn after the tilt
    assert max(tilts) <= 15.5 and max(tilts) > 5.0  # within the bound, and not all upright
    # tilt 0 draws nothing more: the plain variation of a seed is unchanged
    spec = episode_spec(3, scene, 0.1)
    zero = DemoVariation(recovery_fraction=1.0, pause_fraction=1.0, recovery_tilt_deg=0.0)
    np.testing.assert_array_equal(
        draw_variation(3, spec.q0, spec.target, zero).start_q,
        draw_variation(3, spec.q0, spec.target, plain).start_q,
    )


def test_stop_plan_brakes_then_holds():
    q = np.zeros(7)
    dq = np.full(7, 0.4)
    plan = stop_plan(q, dq, 0.6)
    np.testing.assert_allclose(plan.times, [0.2, 0.6])
    np.testing.assert_allclose(plan.positions[0], 0.04)  # 0.5 * 0.2 s * 0.4 rad/s
    np.testing.assert_array_equal(plan.positions[0], plan.positions[1])
    np.testing.assert_array_equal(plan.velocities, 0.0)


def test_a_reach_from_near_the_target_goes_straight_down_to_it():
    scene = SceneConfig()
    var = DemoVariation(recovery_fraction=1.0)
    for seed in range(4):
        spec = episode_spec(seed, scene, 0.1)
        start = draw_variation(seed, spec.q0, spec.target, var).start_q
        assert start is not None
        plan = plan_reach(start, spec.target)
        z0 = _tcp(start)[2]
        heights = np.array([_tcp(q)[2] for q in plan.positions])
        assert heights.max() <= max(z0, spec.target[2]) + 0.005  # never climbs back up
        assert np.linalg.norm(_tcp(plan.positions[-1]) - spec.target) < 0.005


def test_the_tcp_is_the_offset_along_the_tool_axis_and_the_flange_sits_behind_it():
    """FK + offset: pointing down, the flange is the offset straight above the TCP."""
    from kinova_policy_ros.sim.expert import flange_for_tcp
    from kinova_policy_ros.sim.mjcf import TCP_OFFSET_2F85

    assert 0.10 <= TCP_OFFSET_2F85 <= 0.12  # the 2F-85's fingertips beyond the flange
    t = kin.fk_matrix(kin.HOME)
    np.testing.assert_allclose(tcp_point(t, 0.1), t[:3, 3] + [0.1, 0.0, 0.0], atol=2e-3)
    down = np.diag([1.0, -1.0, -1.0])
    np.testing.assert_allclose(flange_for_tcp([0.5, 0.1, 0.03], down, 0.1), [0.5, 0.1, 0.13])
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = down, flange_for_tcp([0.5, 0.1, 0.03], down, 0.1)
    np.testing.assert_allclose(tcp_point(pose, 0.1), [0.5, 0.1, 0.03])


def test_the_expert_reaches_with_the_tcp_not_the_flange(sim):
    result = rollout_expert(sim, 11)
    assert result.success and sim.distance() < 0.01
    # the flange stays a TCP offset above the cube
    assert sim.flange_distance() == pytest.approx(sim.scene.tcp_offset, abs=0.01)
