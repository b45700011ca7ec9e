"""Tests of the simulated scene: seeded determinism, camera, joint servo (MJCF: test_mjcf)."""

import os

from kinova_policy_ros.core import kinematics as kin
from kinova_policy_ros.core.errors import ConfigError
from kinova_policy_ros.sim.env import episode_spec, Gen3Sim, intrinsics_from_fovy
from kinova_policy_ros.sim.mjcf import SceneConfig
import numpy as np
import pytest


@pytest.fixture(scope='module')
def sim():
    assert os.environ.get('MUJOCO_GL') == 'egl'
    s = Gen3Sim()
    yield s
    s.close()


def test_episode_spec_is_deterministic_and_seed_dependent():
    scene = SceneConfig()
    a, b, c = (episode_spec(s, scene, 0.1) for s in (7, 7, 8))
    np.testing.assert_array_equal(a.q0, b.q0)
    np.testing.assert_array_equal(a.target, b.target)
    assert not np.allclose(a.target, c.target)
    targets = np.stack([episode_spec(s, scene, 0.1).target for s in range(200)])
    assert targets[:, 0].min() >= scene.target_x[0] and targets[:, 0].max() <= scene.target_x[1]
    assert targets[:, 1].min() >= scene.target_y[0] and targets[:, 1].max() <= scene.target_y[1]
    np.testing.assert_allclose(targets[:, 2], scene.table_height + scene.cube_half_size)
    with pytest.raises(ConfigError, match='seed'):
        episode_spec(-1, scene, 0.1)


def test_same_seed_same_images_and_motion(sim):
    other = Gen3Sim()
    try:
        runs = []
        for s in (sim, other):
            s.reset(11)
            q0 = s.joint_positions(wrapped=False)
            s.step(q0 + 0.05, np.full(7, 0.1), duration=0.2)
            rgb, depth = s.render()
            runs.append((s.joint_positions(), rgb, depth))
        np.testing.assert_array_equal(runs[0][0], runs[1][0])
        np.testing.assert_array_equal(runs[0][1], runs[1][1])
        np.testing.assert_array_equal(runs[0][2], runs[1][2])
        other.reset(12)
        assert not np.array_equal(other.render()[0], runs[1][1])
    finally:
        other.close()


def test_render_shapes_and_depth(sim):
    sim.reset(0)
    rgb, depth = sim.render()
    assert rgb.dtype == np.uint8 and rgb.shape == (96, 128, 3)
    assert depth.dtype == np.float32 and depth.shape == (96, 128)
    assert np.isfinite(depth).all() and (depth >= 0).all()
    assert 0.5 < np.median(depth[depth > 0]) < sim.scene.depth_far


def test_camera_info_projects_the_target_onto_the_red_cube(sim):
    for seed in (0, 3, 9):
        sim.reset(seed)
        rgb, depth = sim.render()
        info = sim.camera_info()
        assert (info.width, info.height) == (128, 96)
        np.testing.assert_allclose(
            info.K, intrinsics_from_fovy(128, 96, sim.scene.camera_fovy_deg)
        )
        p = np.linalg.inv(sim.camera_pose()) @ np.append(sim.target_position(), 1.0)
        uv = (info.K @ p[:3])[:2] / p[2]
        red = (rgb[..., 0] > 120) & (rgb[..., 1] < 60) & (rgb[..., 2] < 60)
        assert red.sum() > 10, f'seed {seed}: the cube is not visible'
        ys, xs = np.nonzero(red)
        assert abs(xs.mean() - uv[0]) < 2.0 and abs(ys.mean() - uv[1]) < 2.5
        # depth at the cube centre: between the cube's near face and its centre
        d = depth[round(uv[1]), round(uv[0])]
        assert p[2] - 2 * sim.scene.cube_half_size < d <= p[2] + 1e-3


def test_reset_state_and_wrapped_joint_positions(sim):
    spec = sim.reset(5)
    assert sim.time == 0.0
    np.testing.assert_allclose(sim.joint_positions(wrapped=False), spec.q0)
    q = sim.joint_positions()
    assert (np.abs(q[kin.CONTINUOUS]) <= np.pi).all()
    np.testing.assert_allclose(kin.wrap_to_pi(q - spec.q0), 0.0, atol=1e-12)
    np.testing.assert_allclose(sim.ee_pose()[0], kin.fk(spec.q0)[0], atol=1e-9)
    np.testing.assert_allclose(sim.target_position(), spec.target)
    assert sim.flange_distance() == pytest.approx(
        np.linalg.norm(kin.fk(spec.q0)[0] - spec.target)
    )
    # success is measured at the tool centre point: FK + the offset along the tool z
    t = kin.fk_matrix(spec.q0)
    tcp = t[:3, 3] + sim.scene.tcp_offset * t[:3, 2]
    np.testing.assert_allclose(sim.tcp_position(), tcp, atol=1e-9)
    assert sim.distance() == pytest.approx(np.linalg.norm(tcp - spec.target))


def test_servo_tracks_and_crosses_pi_without_a_turn(sim):
    spec = sim.reset(2)
    q0 = spec.q0.copy()
    q0[2] = np.pi - 0.05  # joint_3 just below +π
    sim.data.qpos[sim._qadr] = q0
    sim._ref = q0.copy()
    # command joint_3 to -π + 0.05 as a wrapped driver would: the same side, 0.1 rad further
    target = q0.copy()
    target[2] = -np.pi + 0.05
    sim.step(target, duration=0.6)
    q = sim.joint_positions(wrapped=False)
    assert q[2] == pytest.approx(np.pi + 0.05, abs=5e-3)  # continued through +π, no 2π turn
    assert sim.joint_positions()[2] == pytest.approx(-np.pi + 0.05, abs=5e-3)


def test_servo_respects_velocity_and_position_limits(sim):
    spec = sim.reset(1)
    far = spec.q0 + 3.0
    speeds = []
    for _ in range(100):
        sim.step(far, duration=0.01)
        speeds.append(np.abs(sim.joint_velocities()))
    assert (np.max(speeds, axis=0) <= kin.VELOCITY_LIMITS * 1.05).all()
    sim.step(np.full(7, 10.0), duration=3.0)
    q = sim.joint_positions(wrapped=False)
    assert (q <= kin.POSITION_UPPER + 1e-3).all()
    with pytest.raises(ValueError, match='finite'):
        sim.step(np.full(7, np.nan))


def test_invalid_scene_is_rejected():
    with pytest.raises(ConfigError, match='image size'):
        Gen3Sim(SceneConfig(image_width=0), render=False)
    with pytest.raises(ConfigError, match='start_noise'):
        Gen3Sim(start_noise=-1.0, render=False)


def test_task_fields_are_consistent(sim):
    sim.reset(seed=11)
    f = sim.task_fields()
    assert f['seed'] == 11
    tcp, target, ee = (np.asarray(f[k]) for k in ('tcp', 'target', 'ee'))
    assert f['distance'] == pytest.approx(np.linalg.norm(tcp - target))
    assert f['distance_flange'] == pytest.approx(np.linalg.norm(ee - target))
    assert np.linalg.norm(tcp - ee) == pytest.approx(f['tcp_offset'])
    assert f['success'] == (f['distance'] <= f['success_threshold'])
