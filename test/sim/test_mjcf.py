"""The MJCF builder (``sim.mjcf``): the model compiles and matches ``core.kinematics``."""

from kinova_policy_ros.core import kinematics as kin
from kinova_policy_ros.core.errors import ConfigError
from kinova_policy_ros.sim.mjcf import (
    build_mjcf,
    camera_axes,
    CUBE_RGBA,
    LIGHT_DIR,
    optical_rotation,
    SceneConfig,
)
import mujoco
import numpy as np
import pytest


@pytest.fixture(scope='module')
def model() -> mujoco.MjModel:
    return mujoco.MjModel.from_xml_string(build_mjcf())


def test_mjcf_kinematics_equal_the_kinematics_module(model: mujoco.MjModel):
    data = mujoco.MjData(model)
    site = model.site('end_effector').id
    rng = np.random.default_rng(0)
    for q in [np.zeros(7), kin.HOME, *rng.uniform(-2.0, 2.0, (5, 7))]:
        data.qpos[:] = q
        mujoco.mj_forward(model, data)
        t = kin.fk_matrix(q)
        np.testing.assert_allclose(data.site_xpos[site], t[:3, 3], atol=1e-9)
        np.testing.assert_allclose(data.site_xmat[site].reshape(3, 3), t[:3, :3], atol=1e-9)


def test_mjcf_joint_limits_are_the_gen3_limits(model: mujoco.MjModel):
    for i, name in enumerate(kin.JOINT_NAMES):
        joint = model.joint(name)
        assert bool(model.jnt_limited[joint.id]) == (not kin.CONTINUOUS[i])
        if not kin.CONTINUOUS[i]:
            np.testing.assert_allclose(
                joint.range, [kin.POSITION_LOWER[i], kin.POSITION_UPPER[i]], atol=1e-9
            )
    assert model.vis.quality.shadowsize == 0


def test_the_arm_has_seven_hinges_in_chain_order_each_with_a_servo(model: mujoco.MjModel):
    assert model.njnt == kin.NUM_JOINTS == 7 and model.nq == 7 and model.nu == 7
    assert [model.joint(j).name for j in range(model.njnt)] == list(kin.JOINT_NAMES)
    assert (model.jnt_type == mujoco.mjtJoint.mjJNT_HINGE).all()
    limited = [n for i, n in enumerate(kin.JOINT_NAMES) if model.jnt_limited[i]]
    assert limited == ['joint_2', 'joint_4', 'joint_6']
    cfg = SceneConfig()
    for a in range(model.nu):
        assert model.actuator(a).name == f'{kin.JOINT_NAMES[a]}_servo'
        assert model.actuator_trnid[a, 0] == a  # drives joint a
        assert model.actuator_gainprm[a, 0] == pytest.approx(cfg.kp)
        assert model.actuator_biasprm[a, 2] == pytest.approx(-cfg.kv)


def test_the_camera_looks_at_the_scene_centre():
    cfg = SceneConfig(image_width=800, image_height=100, camera_fovy_deg=42.0)
    model = mujoco.MjModel.from_xml_string(build_mjcf(cfg))
    cam = model.camera('rgbd')
    np.testing.assert_allclose(cam.pos, cfg.camera_pos, atol=1e-9)
    assert cam.fovy[0] == pytest.approx(42.0)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    axes = data.cam_xmat[cam.id].reshape(3, 3)
    np.testing.assert_allclose(axes, camera_axes(cfg), atol=1e-6)
    # MuJoCo cameras look along -z: towards camera_lookat
    look = np.subtract(cfg.camera_lookat, cfg.camera_pos)
    np.testing.assert_allclose(-axes[:, 2], look / np.linalg.norm(look), atol=1e-6)
    assert (model.vis.global_.offwidth, model.vis.global_.offheight) == (800, 480)


def test_camera_axes_are_a_right_handed_frame_with_a_level_x_axis():
    axes = camera_axes(SceneConfig())
    np.testing.assert_allclose(axes.T @ axes, np.eye(3), atol=1e-12)
    assert np.linalg.det(axes) == pytest.approx(1.0)
    assert axes[2, 0] == pytest.approx(0.0)  # right is horizontal: no roll
    assert axes[2, 1] > 0  # up points up


def test_scene_options_reach_the_model():
    cfg = SceneConfig(physics_dt=0.004, cube_half_size=0.05, table_height=0.1)
    model = mujoco.MjModel.from_xml_string(build_mjcf(cfg))
    assert model.opt.timestep == pytest.approx(0.004)
    assert model.opt.gravity.tolist() == [0.0, 0.0, 0.0]
    np.testing.assert_allclose(model.geom('target_cube').size, [0.05] * 3)
    assert model.body('base_link').pos[2] == pytest.approx(0.1)
    assert model.body('target').mocapid[0] == 0


def test_default_scene_is_the_nominal_scene():
    """The shift options default to the scene recorded so far, value for value."""
    xml = build_mjcf()
    assert (
        '<headlight ambient="0.35 0.35 0.35" diffuse="0.45 0.45 0.45" '
        'specular="0.05 0.05 0.05"/>' in xml
    )
    assert 'dir="-0.3 -0.3 -1" diffuse="0.5 0.5 0.5"/>' in xml
    assert 'rgba="0.85 0.08 0.08 1"' in xml
    assert xml.count('pos="1.05 -0.75 0.95"') == 2  # both cameras at camera_pos
    assert 'distractor' not in xml
    explicit = SceneConfig(
        light_scale=1.0,
        light_dir=LIGHT_DIR,
        camera_offset_m=(0.0, 0.0, 0.0),
        camera_offset_deg=(0.0, 0.0, 0.0),
        cube_rgba=CUBE_RGBA,
        distractor='none',
    )
    assert build_mjcf(explicit) == xml


def test_light_options_reach_the_model():
    cfg = SceneConfig(light_scale=0.5, light_dir=(0.0, -1.0, -0.6))
    model = mujoco.MjModel.from_xml_string(build_mjcf(cfg))
    key = model.light('key').id
    np.testing.assert_allclose(model.light_diffuse[key], [0.25] * 3)
    np.testing.assert_allclose(model.vis.headlight.ambient, [0.175] * 3)
    np.testing.assert_allclose(model.vis.headlight.diffuse, [0.225] * 3)
    np.testing.assert_allclose(model.vis.headlight.specular, [0.025] * 3)
    direction = np.array([0.0, -1.0, -0.6])
    np.testing.assert_allclose(model.light_dir[key], direction / np.linalg.norm(direction))


def test_camera_offset_moves_both_cameras_alike():
    cfg = SceneConfig(camera_offset_m=(0.01, -0.02, 0.005), camera_offset_deg=(2.0, -1.0, 0.5))
    model = mujoco.MjModel.from_xml_string(build_mjcf(cfg))
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    want = np.add(cfg.camera_pos, cfg.camera_offset_m)
    flip = np.diag([1.0, -1.0, -1.0])
    nominal = camera_axes(SceneConfig()) @ flip  # optical frame of the nominal camera
    for name in ('rgbd', 'depth'):
        cam = model.camera(name).id
        np.testing.assert_allclose(data.cam_xpos[cam], want, atol=1e-9)
        optical = data.cam_xmat[cam].reshape(3, 3) @ flip
        np.testing.assert_allclose(nominal.T @ optical, optical_rotation((2.0, -1.0, 0.5)),
                                   atol=1e-6)
    np.testing.assert_allclose(camera_axes(cfg).T @ camera_axes(cfg), np.eye(3), atol=1e-12)


def test_optical_rotation_turns_the_view_the_documented_way():
    np.testing.assert_allclose(optical_rotation((0.0, 0.0, 0.0)), np.eye(3))
    z = np.array([0.0, 0.0, 1.0])  # the viewing direction in the optical frame (y down)
    up = optical_rotation((2.0, 0.0, 0.0)) @ z
    assert up[1] == pytest.approx(-np.sin(np.deg2rad(2.0))) and up[0] == pytest.approx(0.0)
    right = optical_rotation((0.0, 2.0, 0.0)) @ z
    assert right[0] == pytest.approx(np.sin(np.deg2rad(2.0))) and right[1] == pytest.approx(0.0)
    r = optical_rotation((10.0, -20.0, 30.0))
    np.testing.assert_allclose(r.T @ r, np.eye(3), atol=1e-12)
    assert np.linalg.det(r) == pytest.approx(1.0)


def test_cube_colour_and_size_reach_the_model():
    cfg = SceneConfig(cube_rgba=(0.9, 0.35, 0.1, 1.0), cube_half_size=0.021)
    model = mujoco.MjModel.from_xml_string(build_mjcf(cfg))
    np.testing.assert_allclose(model.geom('target_cube').rgba, [0.9, 0.35, 0.1, 1.0])
    np.testing.assert_allclose(model.geom('target_cube').size, [0.021] * 3)
    np.testing.assert_allclose(model.body('target').pos[2], 0.021)


@pytest.mark.parametrize(('shape', 'size'), [('box', [0.02] * 3), ('cylinder', [0.02, 0.02, 0])])
def test_distractor_is_a_second_mocap_body_after_the_target(shape, size):
    cfg = SceneConfig(distractor=shape, distractor_half_size=0.02, distractor_rgba=(0, 0, 1, 1))
    model = mujoco.MjModel.from_xml_string(build_mjcf(cfg))
    assert model.body('target').mocapid[0] == 0  # the target stays mocap 0
    assert model.body('distractor').mocapid[0] == 1 and model.nmocap == 2
    geom = model.geom('distractor_geom')
    np.testing.assert_allclose(geom.size, size)
    np.testing.assert_allclose(geom.rgba, [0, 0, 1, 1])
    kind = mujoco.mjtGeom.mjGEOM_BOX if shape == 'box' else mujoco.mjtGeom.mjGEOM_CYLINDER
    assert geom.type[0] == kind
    assert model.nq == 7 and model.nu == 7  # no new degree of freedom


@pytest.mark.parametrize(
    ('field', 'value', 'match'),
    [
        ('light_scale', 0.0, r'light_scale: 0\.0 must be a finite number > 0'),
        ('light_scale', float('nan'), r'light_scale: nan'),
        ('light_dir', (0.0, 0.0, 1.0), r'light_dir: \(0\.0, 0\.0, 1\.0\) must point down'),
        ('light_dir', (0.0, -1.0), r'light_dir: \(0\.0, -1\.0\) must be 3 finite numbers'),
        ('camera_offset_m', (0.0, 0.0, 1.0), r'camera_offset_m: .* exceeds 0\.5'),
        ('camera_offset_m', (0.0, float('inf'), 0.0), r'camera_offset_m: .* 3 finite'),
        ('camera_offset_deg', (90.0, 0.0, 0.0), r'camera_offset_deg: .* exceeds 45'),
        ('cube_half_size', -0.01, r'cube_half_size: -0\.01 must be a finite number > 0'),
        ('cube_rgba', (1.2, 0.0, 0.0, 1.0), r'cube_rgba: \(1\.2, .* in \[0, 1\]'),
        ('cube_rgba', (1.0, 0.0, 0.0, 0.0), r'cube_rgba: .* alpha > 0'),
        ('distractor', 'sphere', r"distractor: 'sphere' is not one of \['none', 'box'"),
        ('distractor_rgba', (0.0, 0.0, 1.0), r'distractor_rgba: .* 4 finite numbers'),
        ('distractor_half_size', 0.0, r'distractor_half_size: 0\.0 must be'),
        ('distractor_clearance', -0.1, r'distractor_clearance: -0\.1 must be >= 0'),
    ],
)
def test_invalid_shift_options_name_the_field_and_value(field, value, match):
    with pytest.raises(ConfigError, match=rf'SceneConfig\.{match}'):
        SceneConfig(**{field: value})
