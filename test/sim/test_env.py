"""Tests of the simulated scene: seeded determinism, camera, joint servo (MJCF: test_mjcf)."""

from dataclasses import replace
import os

from kinova_policy_ros.core import kinematics as kin
from kinova_policy_ros.core.errors import ConfigError
from kinova_policy_ros.sim.env import (
    draw_distractor,
    episode_spec,
    Gen3Sim,
    intrinsics_from_fovy,
    min_distractor_distance,
)
from kinova_policy_ros.sim.mjcf import optical_rotation, SceneConfig
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


def test_the_distractor_leaves_the_episode_as_it_was():
    """With the option on, the seed draws the same target and start pose; the distractor apart."""
    off = SceneConfig()
    on = replace(off, distractor='box')
    least = min_distractor_distance(on)
    assert least == pytest.approx(np.sqrt(2) * 0.06 + 0.03)
    places = []
    for seed in range(100):
        a, b = episode_spec(seed, off, 0.1), episode_spec(seed, on, 0.1)
        np.testing.assert_array_equal(a.q0, b.q0)
        np.testing.assert_array_equal(a.target, b.target)
        assert a.target_yaw == b.target_yaw and a.distractor is None
        assert b.distractor is not None
        assert np.hypot(*(b.distractor - b.target)[:2]) >= least
        assert on.target_x[0] <= b.distractor[0] <= on.target_x[1]
        assert on.target_y[0] <= b.distractor[1] <= on.target_y[1]
        assert b.distractor[2] == pytest.approx(on.table_height + on.distractor_half_size)
        np.testing.assert_array_equal(b.distractor, episode_spec(seed, on, 0.1).distractor)
        places.append(b.distractor)
    assert len({tuple(p) for p in places}) == 100  # a function of the seed, not a constant


def test_a_table_without_room_for_the_distractor_is_an_error():
    tight = SceneConfig(distractor='box', target_x=(0.5, 0.52), target_y=(0.0, 0.02))
    with pytest.raises(ConfigError, match=r'SceneConfig\.distractor: no place 0\.115 m'):
        draw_distractor(0, tight, np.array([0.51, 0.01, 0.03]))


def test_the_distractor_is_placed_but_never_the_target(sim):
    on = Gen3Sim(replace(sim.scene, distractor='cylinder'))
    try:
        assert sim.distractor_position() is None
        for seed in (3, 8):
            spec = on.reset(seed)
            sim.reset(seed)
            np.testing.assert_allclose(on.distractor_position(), spec.distractor)
            np.testing.assert_array_equal(on.target_position(), sim.target_position())
            assert on.task_fields() == sim.task_fields()  # success: the target cube only
            rgb_on, rgb_off = (s.render()[0].astype(int) for s in (on, sim))
            blue = (rgb_on[..., 2] > rgb_on[..., 0] + 60).sum()
            assert blue > 10 and (rgb_off[..., 2] > rgb_off[..., 0] + 60).sum() == 0
    finally:
        on.close()


def test_defaults_render_the_same_as_explicit_nominal_options(sim):
    nominal = replace(
        sim.scene, light_scale=1.0, camera_offset_m=(0.0, 0.0, 0.0), distractor='none'
    )
    other = Gen3Sim(nominal)
    try:
        for seed in (0, 7):
            sim.reset(seed)
            other.reset(seed)
            np.testing.assert_array_equal(sim.render()[0], other.render()[0])
            np.testing.assert_array_equal(sim.render()[1], other.render()[1])
    finally:
        other.close()


def test_light_scale_dims_and_brightens_the_image(sim):
    sim.reset(4)
    nominal = sim.render()[0].mean()
    means = []
    for scale in (0.5, 1.5):
        with Gen3Sim(replace(sim.scene, light_scale=scale)) as s:
            s.reset(4)
            rgb, depth = s.render()
            means.append(rgb.mean())
            np.testing.assert_array_equal(depth, sim.render()[1])  # geometry unchanged
    assert means[0] < nominal - 10 and means[1] > nominal + 10


def test_camera_offset_moves_camera_pose_and_image(sim):
    sim.reset(2)
    rgb0, pose0 = sim.render()[0], sim.camera_pose()
    shifted = replace(sim.scene, camera_offset_m=(0.01, 0.0, 0.0), camera_offset_deg=(0, 2.0, 0))
    with Gen3Sim(shifted) as s:
        s.reset(2)
        pose = s.camera_pose()
        np.testing.assert_allclose(pose[:3, 3] - pose0[:3, 3], [0.01, 0.0, 0.0], atol=1e-9)
        rel = pose0[:3, :3].T @ pose[:3, :3]
        np.testing.assert_allclose(rel, optical_rotation((0.0, 2.0, 0.0)), atol=1e-6)
        rgb = s.render()[0]
        assert np.abs(rgb.astype(int) - rgb0).mean() > 1.0
        # the target projects where the moved camera sees it: onto the red cube
        p = np.linalg.inv(pose) @ np.append(s.target_position(), 1.0)
        uv = (s.camera_info().K @ p[:3])[:2] / p[2]
        ys, xs = np.nonzero((rgb[..., 0] > 120) & (rgb[..., 1] < 60) & (rgb[..., 2] < 60))
        assert abs(xs.mean() - uv[0]) < 2.0 and abs(ys.mean() - uv[1]) < 2.5


def test_cube_half_size_is_the_rendered_cube_and_the_target(sim):
    small = replace(sim.scene, cube_half_size=0.02)
    spec = episode_spec(6, small, 0.1)
    assert spec.target[2] == pytest.approx(0.02)  # the centre of the cube on the table
    counts = []
    for scene in (small, sim.scene):
        with Gen3Sim(scene) as s:
            s.reset(6)
            rgb = s.render()[0]
            counts.append(((rgb[..., 0] > 120) & (rgb[..., 1] < 60) & (rgb[..., 2] < 60)).sum())
            np.testing.assert_allclose(s.target_position(), episode_spec(6, scene, 0.1).target)
    assert 0 < counts[0] < 0.7 * counts[1]
