"""The scripted DLS-IK expert: plans within the Gen3 limits and reaches seeded targets."""

from kinova_policy_ros import kinematics as kin
from kinova_policy_ros.sim.env import episode_spec, Gen3Sim
from kinova_policy_ros.sim.expert import ExpertConfig, plan_reach, rollout_expert
from kinova_policy_ros.sim.mjcf import SceneConfig
import numpy as np
import pytest


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
        assert np.linalg.norm(t_end[:3, 3] - spec.target) < 0.005
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
