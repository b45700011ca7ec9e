"""
Replan latency side by side: our PolicyRunner against LeRobot's ACT policy, in one process.

One replan tick, the same observation for every system (RGB uint8 + depth in metres at the model
size, 96x128 by default, and 7 joint positions):

- ours: ``PolicyRunner.push_observation`` (the newest frame -> one token, the older 7 tokens are
  cached) + ``predict`` (the transformer on the 8-token window -> 12 targets, 6 executed), at the
  seed size (d_model 256, 4 + 4 layers, feed-forward 1024, ~7.8 M parameters) and at the default
  ``ModelConfig()``;
- ACT (``lerobot.policies.act``, LeRobot's default sizes: ResNet-18, dim_model 512, 4 encoder +
  1 decoder layers, ~51.6 M parameters), chunk_size 12, n_action_steps 6, random weights, eval
  mode, no temporal ensembling: the frame goes through the same preprocessing as ours, then the
  mean/std normalization LeRobot's processor applies, then ``select_action`` with an empty action
  queue (``reset()`` first), i.e. ``predict_action_chunk`` on one observation: RGB and depth (as
  a 3-channel image) are two cameras, each through the ResNet-18.

The systems take turns tick by tick (the order rotates), so a busy machine slows all alike.
LeRobot is a bench-only dependency in its own venv (``scripts/setup_bench_venv.sh``)::

    .venv-bench/bin/python bench/bench_act.py [--ticks 200] [--threads 2] [--profile-ticks 50]

Exit code 2 (with a message) when lerobot cannot be imported.
"""

import argparse
from collections.abc import Callable
import glob
import importlib.metadata
import importlib.util
import os
import sys
import tempfile
import time
from typing import Any

from common import percentiles_ms, report
from kinova_policy_ros.core.config import DataConfig
from kinova_policy_ros.data.preprocess import preprocess_frames
from kinova_policy_ros.policy.inference import PolicyRunner
from kinova_policy_ros.policy.model import count_parameters
from kinova_policy_ros.testing.synthetic import make_random_checkpoint
import numpy as np
import torch
from torch.profiler import profile as torch_profile
from torch.profiler import ProfilerActivity

SETUP_HINT = 'bash scripts/setup_bench_venv.sh, then run this with .venv-bench/bin/python'
#: ModelConfig overrides of the seed size (about 7.8 M parameters).
SEED_SIZE = {
    'd_model': 256, 'nhead': 4, 'num_encoder_layers': 4, 'num_decoder_layers': 4,
    'dim_feedforward': 1024,
}
# ImageNet statistics: what LeRobot's normalizer uses for camera features of ImageNet backbones.
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
DATA = DataConfig()  # the depth scaling of make_random_checkpoint, so of PolicyRunner too
_keep: list[Any] = []  # keeps the op-schema library below alive for the process


def _torchvision_op_schemas() -> None:
    """
    Let ``import torchvision`` work without its C++ ops.

    PyPI's torchvision wheels link against the CUDA build of torch, so with the CPU build their
    ``_C`` extension does not load, and ``import torchvision`` then fails in
    ``register_fake('torchvision::nms')`` ("operator torchvision::nms does not exist"). ACT needs
    only the pure-Python ResNet-18, ``IntermediateLayerGetter`` and ``FrozenBatchNorm2d``: declare
    the two op schemas that import registers (no kernel; calling them would fail).
    """
    spec = importlib.util.find_spec('torchvision')
    if spec is None or spec.origin is None:
        return  # the lerobot import below says what is missing
    libs = glob.glob(os.path.join(os.path.dirname(spec.origin), '_C*.so'))
    try:
        if libs:
            torch.ops.load_library(libs[0])
            return
    except OSError:
        pass
    lib = torch.library.Library('torchvision', 'DEF')
    for op in ('nms', 'qnms'):
        lib.define(f'{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')
    _keep.append(lib)


def import_act() -> tuple[Any, Any, Any, Any]:
    """Return ``(ACTConfig, ACTPolicy, FeatureType, PolicyFeature)``; exit 2 without lerobot."""
    if importlib.util.find_spec('lerobot') is None:
        print(
            f'bench_act: lerobot is not installed in {sys.prefix} (a bench-only dependency): '
            + SETUP_HINT, file=sys.stderr,
        )
        sys.exit(2)
    _torchvision_op_schemas()
    try:
        from lerobot.configs.types import FeatureType, PolicyFeature
        from lerobot.policies.act.configuration_act import ACTConfig
        from lerobot.policies.act.modeling_act import ACTPolicy
    except ImportError as e:
        print(
            f'bench_act: lerobot is installed but its ACT policy cannot be imported ({e}): '
            + SETUP_HINT + ' (requirements-bench.txt)', file=sys.stderr,
        )
        sys.exit(2)
    return ACTConfig, ACTPolicy, FeatureType, PolicyFeature


def make_act(hw: tuple[int, int]) -> Any:
    """ACT at LeRobot's default sizes, chunk 12 / 6 executed, random weights, eval mode."""
    act_config, act_policy, feature_type, policy_feature = import_act()
    h, w = hw
    cfg = act_config(
        chunk_size=12,
        n_action_steps=6,
        temporal_ensemble_coeff=None,
        pretrained_backbone_weights=None,  # random weights: nothing is downloaded
        device='cpu',
        input_features={
            'observation.state': policy_feature(feature_type.STATE, (7,)),
            'observation.images.rgb': policy_feature(feature_type.VISUAL, (3, h, w)),
            'observation.images.depth': policy_feature(feature_type.VISUAL, (3, h, w)),
        },
        output_features={'action': policy_feature(feature_type.ACTION, (7,))},
    )
    torch.manual_seed(0)
    return act_policy(cfg).eval()


def act_tick(policy: Any, hw: tuple[int, int]) -> Callable[..., np.ndarray]:
    """Return the ACT replan tick: observation -> the first of the 6 executed actions."""
    q_mean, q_std = torch.zeros(7), torch.ones(7)

    @torch.inference_mode()
    def tick(rgb: np.ndarray, depth: np.ndarray, q: np.ndarray) -> np.ndarray:
        rgb_t, depth_t = preprocess_frames(
            rgb[None], depth[None], hw, DATA.max_depth_m, DATA.normalize_depth01
        )  # [1,3,h,w], [1,1,h,w] in [0, 1]: the same code as PolicyRunner's
        batch = {
            'observation.images.rgb': (rgb_t - IMAGENET_MEAN) / IMAGENET_STD,
            'observation.images.depth': (depth_t.expand(-1, 3, -1, -1) - IMAGENET_MEAN)
            / IMAGENET_STD,
            'observation.state': ((torch.from_numpy(q).float() - q_mean) / q_std)[None],
        }
        policy.reset()  # an empty queue: this call predicts a new chunk
        action = policy.select_action(batch)  # [1,7]; 5 more wait in the queue
        out: np.ndarray = (action[0] * q_std + q_mean).numpy()
        return out

    return tick


def runner_tick(runner: PolicyRunner) -> Callable[..., np.ndarray]:
    """Return our replan tick: push the newest frame + predict the 12 targets."""

    def tick(rgb: np.ndarray, depth: np.ndarray, q: np.ndarray) -> np.ndarray:
        runner.push_observation(rgb, depth, q)
        return runner.predict()

    return tick


def make_runner(
    tmp: str, name: str, hw: tuple[int, int], overrides: dict[str, Any], jit: bool = False
) -> PolicyRunner:
    """Load a PolicyRunner on a random checkpoint (K=8, T=12, 6 executed)."""
    ckpt = make_random_checkpoint(
        os.path.join(tmp, name), image_hw=hw, obs_horizon=8, pred_horizon=12,
        action_horizon=6, **overrides,
    )
    runner = PolicyRunner.from_checkpoint(ckpt, 'cpu', use_cache=True, jit=jit)
    if jit and not runner.jit:
        raise RuntimeError(f'{name}: {runner.jit_note}')
    return runner


def measure(
    ticks: dict[str, Callable[..., np.ndarray]], frames: tuple[np.ndarray, ...], n: int
) -> dict[str, list[float]]:
    """Time ``n`` ticks of every system, taking turns (rotating order); outputs checked finite."""
    rgb, depth, q = frames
    names = list(ticks)
    for _ in range(10):  # warm-up, fills our 8-frame windows
        for name in names:
            ticks[name](rgb, depth, q)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(n):
        qi = q + 1e-4 * i
        for j in range(len(names)):
            name = names[(i + j) % len(names)]
            t0 = time.perf_counter()
            out = ticks[name](rgb, depth, qi)
            times[name].append(time.perf_counter() - t0)
            if not np.all(np.isfinite(out)):
                raise RuntimeError(f'{name}: non-finite output at tick {i}')
    return times


def profile(tick: Callable[..., np.ndarray], frames: tuple[np.ndarray, ...], n: int) -> str:
    """torch.profiler table of ``n`` ticks (self CPU time per op)."""
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(n):
            tick(frames[0], frames[1], frames[2] + 1e-4 * i)
    table: str = prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=20)
    return table


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument('--ticks', type=int, default=200)
    ap.add_argument('--hw', type=int, nargs=2, default=[96, 128])
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument(
        '--profile-ticks', type=int, default=0,
        help='then profile this many ticks of ours at the seed size (table on stderr)',
    )
    args = ap.parse_args()
    hw = (args.hw[0], args.hw[1])
    policy = make_act(hw)  # first: exits 2 without lerobot
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    frames = (
        rng.integers(0, 256, (*hw, 3), dtype=np.uint8),
        rng.uniform(0.3, 2.0, hw).astype(np.float32),
        np.array([0.0, 0.26, np.pi, -2.27, 0.0, 0.96, np.pi / 2]),
    )
    with tempfile.TemporaryDirectory() as tmp:
        seed = make_runner(tmp, 'seed', hw, SEED_SIZE)
        seed_ts = make_runner(tmp, 'seed_ts', hw, SEED_SIZE, jit=True)  # the node's default
        default = make_runner(tmp, 'default', hw, {})
        ticks = {
            'act': act_tick(policy, hw),
            'ours_seed': runner_tick(seed),
            'ours_seed_torchscript': runner_tick(seed_ts),
            'ours_default': runner_tick(default),
        }
        times = measure(ticks, frames, args.ticks)
        n_prof = args.profile_ticks
        prof = profile(ticks['ours_seed'], frames, n_prof) if n_prof else ''
    stats = {name: percentiles_ms(t) for name, t in times.items()}
    params = {
        'act': sum(p.numel() for p in policy.parameters()),
        'ours_seed': count_parameters(seed.model),
        'ours_seed_torchscript': count_parameters(seed_ts.model),
        'ours_default': count_parameters(default.model),
    }
    ratios = {
        f'act_over_{name}_{q}': stats['act'][f'{q}_ms'] / stats[name][f'{q}_ms']
        for name in ('ours_seed', 'ours_seed_torchscript', 'ours_default')
        for q in ('p50', 'p99')
    }
    report(
        'act',
        {
            'command': 'python bench/bench_act.py ' + ' '.join(sys.argv[1:]),
            'model_hw': hw,
            'lerobot': importlib.metadata.version('lerobot'),
            'act_config': {
                'chunk_size': 12, 'n_action_steps': 6, 'cameras': ['rgb', 'depth(3ch)'],
                'frames_per_tick': 1, 'temporal_ensembling': False,
            },
            'ours_config': {
                'obs_horizon': 8, 'pred_horizon': 12, 'action_horizon': 6,
                'seed_size': SEED_SIZE, 'frames_encoded_per_tick': 1,
            },
            'load_average_1_5_15min': os.getloadavg(),
            'parameters': params,
            **stats,
            **ratios,
            'goal_p99_ratio_seed_ge_5': ratios['act_over_ours_seed_p99'] >= 5.0,
        },
    )
    if prof:
        print(prof, file=sys.stderr)


if __name__ == '__main__':
    main()
