"""Camera profiles: the kinova_vision streams, their intrinsics and rendering in ``Gen3Sim``."""

from kinova_policy_ros.core.errors import ConfigError
from kinova_policy_ros.sim.camera import (
    camera_profile,
    fovy_from_focal,
    KINOVA_COLOR_FY,
    KINOVA_DEPTH_FY,
    PROFILES,
)
from kinova_policy_ros.sim.env import Gen3Sim, intrinsics_from_fovy
from kinova_policy_ros.sim.mjcf import SceneConfig
import numpy as np
import pytest


def test_fovy_and_focal_length_are_inverse():
    for height, fy in ((720, KINOVA_COLOR_FY), (270, KINOVA_DEPTH_FY), (96, 100.0)):
        k = intrinsics_from_fovy(4 * height // 3, height, fovy_from_focal(height, fy))
        assert k[1, 1] == pytest.approx(fy) and k[0, 0] == pytest.approx(fy)
    with pytest.raises(ConfigError, match='fy 0'):
        fovy_from_focal(720, 0.0)


def test_profiles_are_the_demo_camera_and_the_vision_module():
    small, vision = PROFILES['small'], PROFILES['kinova_vision']
    assert (small.color, small.rate_hz) == (small.depth, 15.0)
    assert small.scene() == SceneConfig(depth_width=128, depth_height=96,
                                        depth_fovy_deg=50.0,
                                        depth_frame_id='camera_color_optical_frame')
    assert (vision.color.width, vision.color.height) == (1280, 720)
    assert (vision.depth.width, vision.depth.height) == (480, 270)
    assert (vision.color.frame_id, vision.depth.frame_id) == (
        'camera_color_frame', 'camera_depth_frame'
    )
    assert vision.rate_hz == 30.0
    assert vision.color.fovy_deg == pytest.approx(30.99, abs=0.01)
    assert vision.depth.fovy_deg == pytest.approx(41.11, abs=0.01)
    with pytest.raises(ConfigError, match="camera_profile: 'fisheye' is not one of"):
        camera_profile('fisheye')


def test_kinova_vision_renders_each_stream_with_its_own_camera():
    sim = Gen3Sim(PROFILES['kinova_vision'].scene())
    try:
        rgb, depth = sim.render()
        assert rgb.shape == (720, 1280, 3) and rgb.dtype == np.uint8
        assert depth.shape == (270, 480) and depth.dtype == np.float32
        info, dinfo = sim.camera_info(), sim.depth_camera_info()
        assert (info.width, info.height, info.frame_id) == (1280, 720, 'camera_color_frame')
        assert (dinfo.width, dinfo.height, dinfo.frame_id) == (480, 270, 'camera_depth_frame')
        assert dinfo.K[1, 1] == pytest.approx(KINOVA_DEPTH_FY)
        # the wider depth camera sees the cube's centre where its own K projects it
        cam = sim.camera_pose()
        p = np.linalg.inv(cam) @ np.append(sim.target_position(), 1.0)
        u, v = (dinfo.K @ (p[:3] / p[2]))[:2]
        d = depth[round(float(v)), round(float(u))]
        assert p[2] - 2 * sim.scene.cube_half_size < d <= p[2] + 1e-3
    finally:
        sim.close()
