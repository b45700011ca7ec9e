"""The MJCF builder (``sim.mjcf``): the model compiles and matches ``core.kinematics``."""

from kinova_policy_ros.core import kinematics as kin
from kinova_policy_ros.sim.mjcf import build_mjcf, camera_axes, SceneConfig
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
