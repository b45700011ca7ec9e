"""
Observation -> command latency of the policy node through real DDS.

Starts ``python -m kinova_policy_ros.ros.policy_node`` with a random checkpoint of the default
model
size (``ModelConfig()``, image 96x128), in the benchmark mode ``trigger_on_rgb`` (a control
step per RGB message instead of the timer, so the measurement does not include the wait for the
next tick) and ``action_horizon 1`` (a command per step). This process publishes joint states,
a depth image and an RGB image (camera size, default 480x640), takes the time right before the
RGB publish and again when the ``JointTrajectory`` command arrives, one observation at a time.
The node decodes both images, resizes them, encodes the frame, runs the transformer, bounds the
command and publishes it: the whole online path.

The images are subscribed RELIABLE (``image_qos_reliable``; ``--best-effort`` keeps the default
sensor-data QoS, which loses most 640x480 raw frames to fragmentation with Fast DDS here).

Runs, all in one invocation: the frame cache on (one frame encode per step, the default) and off
(the whole K-frame window re-encoded every step), each over two Fast DDS transports: the
default one (shared memory with 512 KiB segments, so 640x480 frames go over UDP loopback) and
the package's ``config/fastdds_large_frames.xml`` (32 MiB shared-memory segments). A transport
is a property of the process, so each one runs in a child process of this script.

Usage::

    python bench/bench_node_latency.py [--iterations 300] [--device cpu] [--height 480 --width 640]
        [--transports default,shm] [--modes cache,full] [--checkpoint DIR]
        [--node-param handover:=rest] [--plots off,on]

``--plots on`` subscribes this process to the node's plotting topics (``~/predicted_trajectory``
and ``~/predicted_ee_path``), as RViz or Foxglove would; the node builds them only while someone
listens, so ``off,on`` measures what a plotting tool costs the loop.
"""

import argparse
import json
import os
from pathlib import Path
import platform
import subprocess
import sys
import tempfile
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from kinova_policy_ros.core import image_codec
from kinova_policy_ros.testing.dds import claim_domain_id
from kinova_policy_ros.testing.synthetic import HOME_Q, make_random_checkpoint
from nav_msgs.msg import Path as PathMsg
import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.subscription import Subscription
from sensor_msgs.msg import Image, JointState
from trajectory_msgs.msg import JointTrajectory

ROOT = Path(__file__).resolve().parents[1]
COMMAND_TOPIC = '/joint_trajectory_controller/joint_trajectory'
PLOT_TOPICS = (
    (JointTrajectory, '/kinova_policy/predicted_trajectory'),
    (PathMsg, '/kinova_policy/predicted_ee_path'),
)


def _start_node(
    checkpoint: Path, device: str, use_cache: bool, reliable: bool, extra: list[str]
) -> subprocess.Popen[str]:
    cmd = [
        sys.executable,
        '-m',
        'kinova_policy_ros.ros.policy_node',
        '--ros-args',
        '--params-file',
        str(ROOT / 'config' / 'policy.yaml'),
        '-p',
        f'checkpoint:={checkpoint}',
        '-p',
        f'device:={device}',
        '-p',
        'trigger_on_rgb:=true',
        '-p',
        'action_horizon:=1',
        '-p',
        'enabled_on_start:=true',
        '-p',
        'max_obs_age_s:=5.0',
        '-p',
        f'use_frame_cache:={str(use_cache).lower()}',
        '-p',
        f'image_qos_reliable:={str(reliable).lower()}',
        *[arg for param in extra for arg in ('-p', param)],
        '--log-level',
        'warn',
    ]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _ignore(msg: object) -> None:
    """Take a plotting message and drop it."""


class Driver:
    """Publishes one observation at a time and times the command that answers it."""

    def __init__(
        self, height: int, width: int, depth_hw: tuple[int, int] | None = None
    ) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('bench_node_latency', context=self.context)
        rng = np.random.default_rng(0)
        self.rgb = image_codec.fill_image_msg(
            Image(), image_codec.encode_rgb8(rng.integers(0, 256, (height, width, 3), np.uint8))
        )
        self.depth = image_codec.fill_image_msg(
            Image(),
            image_codec.encode_depth(
                rng.uniform(0.3, 2.0, depth_hw or (height, width)).astype(np.float32)
            ),
        )
        self.joints = JointState()
        self.joints.name = [f'joint_{i}' for i in range(7, 0, -1)]
        self.joints.position = [float(v) for v in np.angle(np.exp(1j * HOME_Q[::-1]))]
        self.rgb_pub = self.node.create_publisher(Image, '/camera/color/image_raw', 10)
        self.depth_pub = self.node.create_publisher(Image, '/camera/depth/image_raw', 10)
        self.joints_pub = self.node.create_publisher(JointState, '/joint_states', 10)
        self.received = threading.Event()
        self.t_received = 0.0
        self.node.create_subscription(JointTrajectory, COMMAND_TOPIC, self._on_command, 10)
        self.diagnostics: dict[str, str] = {}
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 10)
        self.plot_subs: list[Subscription] = []
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def listen_to_plots(self, on: bool) -> None:
        """Subscribe to the node's plotting topics (on), or drop those subscriptions (off)."""
        for sub in self.plot_subs:
            self.node.destroy_subscription(sub)
        self.plot_subs = (
            [self.node.create_subscription(t, name, _ignore, 10) for t, name in PLOT_TOPICS]
            if on
            else []
        )

    def _on_command(self, msg: JointTrajectory) -> None:
        self.t_received = time.perf_counter()
        self.received.set()

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == 'kinova_policy: policy':
                self.diagnostics = {kv.key: kv.value for kv in status.values}

    def step(self, timeout: float) -> float | None:
        """Publish one observation; return the latency (s) of its command, None on timeout."""
        stamp = self.node.get_clock().now().to_msg()
        for msg, pub in ((self.joints, self.joints_pub), (self.depth, self.depth_pub)):
            msg.header.stamp = stamp
            pub.publish(msg)
        time.sleep(0.002)  # let joints and depth land first (they are not what is timed)
        self.received.clear()
        self.rgb.header.stamp = stamp
        t0 = time.perf_counter()
        self.rgb_pub.publish(self.rgb)
        if not self.received.wait(timeout):
            return None
        return self.t_received - t0

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=5.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def run_mode(
    driver: Driver,
    checkpoint: Path,
    device: str,
    use_cache: bool,
    iterations: int,
    warmup: int,
    reliable: bool,
    extra: list[str],
) -> dict[str, float]:
    proc = _start_node(checkpoint, device, use_cache, reliable, extra)
    try:
        end = time.monotonic() + 120.0
        while driver.step(timeout=0.5) is None:  # node starting, discovery
            if proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(
                    f'node did not answer: {proc.stderr.read() if proc.stderr else ""}'
                )
        latencies = []
        timeouts = 0
        for i in range(warmup + iterations):
            lat = driver.step(timeout=0.5)
            if lat is None:
                timeouts += 1
            elif i >= warmup:
                latencies.append(lat)
            time.sleep(0.005)
        ms = np.array(latencies) * 1e3
        driver.diagnostics = {}
        wait_end = time.monotonic() + 3.0
        while 'inference_latency_p50_ms' not in driver.diagnostics and time.monotonic() < wait_end:
            time.sleep(0.05)
        diag = driver.diagnostics
        return {
            'frame_cache': float(use_cache),
            'n': float(ms.size),
            'timeouts': float(timeouts),
            'p50_ms': float(np.percentile(ms, 50)),
            'p90_ms': float(np.percentile(ms, 90)),
            'p99_ms': float(np.percentile(ms, 99)),
            'max_ms': float(ms.max()),
            'mean_ms': float(ms.mean()),
            # Inside the node: control step start -> command published (last 500 steps).
            'node_p50_ms': float(diag.get('inference_latency_p50_ms', 'nan')),
            'node_p99_ms': float(diag.get('inference_latency_p99_ms', 'nan')),
        }
    finally:
        proc.send_signal(2)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


TRANSPORTS = {
    'default': None,
    'shm': ROOT / 'config' / 'fastdds_large_frames.xml',
}
TRANSPORT_NAMES = {
    'default': 'Fast DDS default (UDP loopback for large frames)',
    'shm': 'config/fastdds_large_frames.xml (shared memory)',
}


def run_child(args: argparse.Namespace) -> None:
    """Measure every mode over the transport this process was started with; print JSON lines."""
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    with tempfile.TemporaryDirectory(prefix='bench_node_latency_') as tmp:
        checkpoint = (
            args.checkpoint.resolve()
            if args.checkpoint
            else make_random_checkpoint(Path(tmp) / 'ckpt', image_hw=tuple(args.image_hw))
        )
        driver = Driver(args.height, args.width, tuple(args.depth_hw) if args.depth_hw else None)
        try:
            for plots in args.plots.split(','):
                driver.listen_to_plots(plots == 'on')
                for mode in args.modes.split(','):
                    res = run_mode(
                        driver,
                        checkpoint,
                        args.device,
                        mode == 'cache',
                        args.iterations,
                        args.warmup,
                        not args.best_effort,
                        args.node_param,
                    )
                    out = {'mode': mode, 'plots': plots, **res}
                    print('RESULT ' + json.dumps(out), flush=True)
        finally:
            driver.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--iterations', type=int, default=300)
    parser.add_argument('--warmup', type=int, default=30)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--image-hw', type=int, nargs=2, default=(96, 128))
    parser.add_argument(
        '--checkpoint',
        type=Path,
        default=None,
        help="a trained checkpoint (e.g. the demo's) instead of a random one of the default size",
    )
    parser.add_argument(
        '--depth-hw',
        type=int,
        nargs=2,
        default=None,
        help='depth size when it differs from colour (kinova_vision: 270 480)',
    )
    parser.add_argument('--modes', default='cache,full', help='cache, full or both')
    parser.add_argument(
        '--transports', default='default,shm', help=f'any of {",".join(TRANSPORTS)}'
    )
    parser.add_argument(
        '--best-effort',
        action='store_true',
        help='keep the default sensor-data (best effort) image QoS; large frames may be lost',
    )
    parser.add_argument(
        '--node-param',
        action='append',
        default=[],
        metavar='NAME:=VALUE',
        help='extra policy_node parameter (repeatable), e.g. torch_num_threads:=2',
    )
    parser.add_argument(
        '--plots',
        default='off',
        help="off, on or both: whether this process subscribes to the node's plotting topics",
    )
    parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not set(args.plots.split(',')) <= {'off', 'on'}:
        parser.error(f'--plots: expected off, on or off,on, got {args.plots!r}')
    if args.child:
        run_child(args)
        return

    import torch

    domain = claim_domain_id()  # one id of this run's own, held until it ends
    rows: list[tuple[str, dict[str, float]]] = []
    for transport in args.transports.split(','):
        if transport not in TRANSPORTS:
            parser.error(f'--transports: unknown {transport!r} (choose from {list(TRANSPORTS)})')
        env = {k: v for k, v in os.environ.items() if k != 'FASTDDS_DEFAULT_PROFILES_FILE'}
        profile = TRANSPORTS[transport]
        if profile is not None:
            env['FASTDDS_DEFAULT_PROFILES_FILE'] = str(profile)
        env['ROS_DOMAIN_ID'] = str(domain.domain_id)
        child = subprocess.run(
            [sys.executable, __file__, *sys.argv[1:], '--child'],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
            check=True,
        )
        for line in child.stdout.splitlines():
            if line.startswith('RESULT '):
                res = json.loads(line.removeprefix('RESULT '))
                print(json.dumps({'transport': transport, **res}), flush=True)
                rows.append((transport, res))
    device = args.device
    if device.startswith('cuda') and torch.cuda.is_available():
        device += f' ({torch.cuda.get_device_name(0)})'
    print(
        f'\nobservation -> command latency through DDS ({platform.processor() or "cpu"}, '
        f'{os.cpu_count()} cores, torch {torch.__version__}, device {device}, '
        f'camera {args.height}x{args.width}'
        f'{"" if not args.depth_hw else f" (depth {args.depth_hw[0]}x{args.depth_hw[1]})"}, '
        f'model input {args.image_hw[0]}x{args.image_hw[1]}, '
        f'image QoS {"best effort" if args.best_effort else "reliable"})'
    )
    print(
        '| transport | mode | plotting subscribers | p50 ms | p90 ms | p99 ms | max ms | n '
        '| lost | in-node p50 / p99 ms |'
    )
    print('|---|---|---|---|---|---|---|---|---|---|')
    for transport, res in rows:
        name = 'frame cache (default)' if res['mode'] == 'cache' else 'full-window recompute'
        print(
            f'| {TRANSPORT_NAMES[transport]} | {name} | {res["plots"]} '
            f'| {res["p50_ms"]:.2f} | {res["p90_ms"]:.2f} '
            f'| {res["p99_ms"]:.2f} | {res["max_ms"]:.2f} | {int(res["n"])} '
            f'| {int(res["timeouts"])} | {res["node_p50_ms"]:.2f} / {res["node_p99_ms"]:.2f} |'
        )


if __name__ == '__main__':
    main()
