"""
Benchmark of the simulator: render cost, offline demonstration generation, expert success.

Measured in the same run:

* ``render``: one 128x96 RGB + depth frame of the scene as the simulator renders it (no shadows,
  no offscreen multisampling) against MuJoCo's defaults (shadows + 4x MSAA, the baseline);
* ``profiles``: one frame (colour + depth, what ``sim_node`` publishes) of each camera profile,
  ``small`` (128x96 + 128x96) against ``kinova_vision`` (1280x720 colour + 480x270 depth from a
  second camera), in-process through ``Gen3Sim.render``, with their ratio;
* ``generate``: seconds of CPU per offline expert episode written as an MCAP bag (physics at
  500 Hz, joint states at 100 Hz, RGB-D at 15 Hz), against the simulated episode length;
* ``expert``: success rate of the scripted expert over N seeded targets (3 cm threshold), final
  distance median / max.

    python bench/bench_sim.py [--frames 100] [--episodes 10] [--seeds 100] [--render-only]
"""

import argparse
import json
from pathlib import Path
import sys
import tempfile
import time
from typing import Any

from kinova_policy_ros.core import kinematics as kin
from kinova_policy_ros.sim.camera import PROFILES
from kinova_policy_ros.sim.env import Gen3Sim
from kinova_policy_ros.sim.expert import rollout_expert
from kinova_policy_ros.sim.mjcf import build_mjcf
from kinova_policy_ros.sim.ros.record_demos import record_offline
import mujoco
import numpy as np


def render_ms(xml: str, frames: int) -> float:
    """Milliseconds per RGB + depth frame of ``xml`` at 128x96."""
    model = mujoco.MjModel.from_xml_string(xml)
    data = mujoco.MjData(model)
    data.qpos[:] = kin.HOME
    mujoco.mj_forward(model, data)
    renderer = mujoco.Renderer(model, height=96, width=128)
    try:
        for _ in range(5):
            renderer.update_scene(data, camera='rgbd')
            renderer.render()
        start = time.perf_counter()
        for _ in range(frames):
            renderer.update_scene(data, camera='rgbd')
            renderer.render()
            renderer.enable_depth_rendering()
            renderer.render()
            renderer.disable_depth_rendering()
        return (time.perf_counter() - start) / frames * 1000
    finally:
        renderer.close()


def profile_render_ms(name: str, frames: int) -> float:
    """Milliseconds per published frame (colour + depth) of camera profile ``name``."""
    sim = Gen3Sim(PROFILES[name].scene())
    try:
        for _ in range(3):
            sim.render()
        start = time.perf_counter()
        for _ in range(frames):
            sim.render()
        return (time.perf_counter() - start) / frames * 1000
    finally:
        sim.close()


def profile_figures(frames: int) -> dict[str, Any]:
    """Render cost of ``kinova_vision`` against ``small``, measured in the same run."""
    small = profile_render_ms('small', frames)
    vision = profile_render_ms('kinova_vision', max(5, frames // 4))
    return {
        'render_ms_profile_small': round(small, 2),
        'render_ms_profile_kinova_vision': round(vision, 2),
        'render_cost_kinova_vision_vs_small': round(vision / small, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--frames', type=int, default=100)
    parser.add_argument('--episodes', type=int, default=10)
    parser.add_argument('--seeds', type=int, default=100)
    parser.add_argument(
        '--render-only', action='store_true', help='only the render figures of the profiles'
    )
    parser.add_argument('--json', type=Path, default=None, help='also write the figures here')
    args = parser.parse_args(argv)
    profiles = profile_figures(args.frames)
    if args.render_only:
        print(json.dumps(profiles, indent=1))
        return 0

    xml = build_mjcf()
    default_xml = xml.replace('<quality shadowsize="0" offsamples="0"/>', '').replace(
        'castshadow="false"', 'castshadow="true"'
    )
    fast = render_ms(xml, args.frames)
    baseline = render_ms(default_xml, max(10, args.frames // 5))

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        cpu = time.process_time()
        episodes = record_offline(Path(tmp), range(args.episodes), verbose=False)
        wall = (time.perf_counter() - start) / args.episodes
        cpu_s = (time.process_time() - cpu) / args.episodes
    sim_s = float(np.mean([e['duration_s'] for e in episodes]))

    sim = Gen3Sim(render=False)
    try:
        results = [rollout_expert(sim, 1000 + s) for s in range(args.seeds)]
    finally:
        sim.close()
    final = np.array([r.final_distance for r in results])

    figures: dict[str, Any] = {
        'render_ms_per_rgbd_frame': round(fast, 2),
        'render_ms_mujoco_defaults': round(baseline, 2),
        'render_speedup_vs_defaults': round(baseline / fast, 1),
        **profiles,
        'generate_wall_s_per_episode': round(wall, 3),
        'generate_cpu_s_per_episode': round(cpu_s, 3),
        'simulated_s_per_episode': round(sim_s, 2),
        'generate_realtime_factor': round(sim_s / wall, 1),
        'expert_success_rate': float(np.mean(final <= 0.03)),
        'expert_final_distance_mm_median': round(1000 * float(np.median(final)), 2),
        'expert_final_distance_mm_max': round(1000 * float(final.max()), 2),
        'expert_seeds': args.seeds,
    }
    print(json.dumps(figures, indent=1))
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
