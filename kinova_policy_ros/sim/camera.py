"""
Camera profiles of the simulator: what the simulated RGB-D camera publishes.

``small`` is the demo's camera (one 128x96 pinhole for colour and depth, 15 Hz). ``kinova_vision``
is the Kinova Gen3 vision module as the ``kinova_vision`` driver (Kinovarobotics/
ros2_kortex_vision) publishes it: colour 1280x720 ``rgb8`` in ``camera_color_frame`` and depth
480x270 ``16UC1`` in ``camera_depth_frame``, each with its own CameraInfo, at the driver's default
``max_color_pub_rate`` / ``max_depth_pub_rate`` of 30 Hz. The focal lengths are those of the
driver's default calibration files (``launch/calibration/default_color_calib_1280x720.ini``: fy
1298.63 px; ``default_depth_calib_480x270.ini``: fy 360.01 px); MuJoCo renders square pixels
around the image centre, so each stream's camera gets the vertical field of view of its fy and
the CameraInfo states that pinhole (centred principal point).
"""

from dataclasses import dataclass, replace

from kinova_policy_ros.core.errors import ConfigError
from kinova_policy_ros.sim.mjcf import SceneConfig
import numpy as np

KINOVA_COLOR_FY = 1298.631344
"""Colour fy (px) at 1280x720, ros2_kortex_vision default_color_calib_1280x720.ini."""
KINOVA_DEPTH_FY = 360.013366699
"""Depth fy (px) at 480x270, ros2_kortex_vision default_depth_calib_480x270.ini."""


def fovy_from_focal(height: int, fy: float) -> float:
    """Vertical field of view (degrees) of a pinhole of ``height`` px and focal length ``fy``."""
    if height <= 0 or not fy > 0:
        raise ConfigError(f'camera height {height} and fy {fy} must be positive')
    return float(np.rad2deg(2.0 * np.arctan(height / 2.0 / fy)))


@dataclass(frozen=True)
class StreamSpec:
    """One image stream: size, vertical field of view, header frame id."""

    width: int
    height: int
    fovy_deg: float
    frame_id: str


@dataclass(frozen=True)
class CameraProfile:
    """A camera the simulator can be: the colour and depth streams and their rate."""

    name: str
    color: StreamSpec
    depth: StreamSpec
    rate_hz: float

    def scene(self, base: SceneConfig | None = None) -> SceneConfig:
        """Return ``base`` (default ``SceneConfig()``) with this profile's camera."""
        return replace(
            base or SceneConfig(),
            image_width=self.color.width,
            image_height=self.color.height,
            camera_fovy_deg=self.color.fovy_deg,
            camera_frame_id=self.color.frame_id,
            depth_width=self.depth.width,
            depth_height=self.depth.height,
            depth_fovy_deg=self.depth.fovy_deg,
            depth_frame_id=self.depth.frame_id,
        )


_SMALL = StreamSpec(128, 96, 50.0, 'camera_color_optical_frame')

PROFILES: dict[str, CameraProfile] = {
    'small': CameraProfile('small', _SMALL, _SMALL, 15.0),
    'kinova_vision': CameraProfile(
        'kinova_vision',
        StreamSpec(1280, 720, fovy_from_focal(720, KINOVA_COLOR_FY), 'camera_color_frame'),
        StreamSpec(480, 270, fovy_from_focal(270, KINOVA_DEPTH_FY), 'camera_depth_frame'),
        30.0,
    ),
}
DEFAULT_PROFILE = 'small'


def camera_profile(name: str) -> CameraProfile:
    """Return the profile ``name``; ConfigError naming the parameter and the choices otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(
            f'parameter camera_profile: {name!r} is not one of {sorted(PROFILES)}'
        ) from None
