"""Small helpers shared by the benchmarks (timing statistics, memory, JSON output)."""

import csv
import io
import json
import os
from pathlib import Path
import platform
import signal
import sys
import threading
from typing import Any

from kinova_policy_ros.data.schema import atomic_write
import numpy as np
import torch


def percentiles_ms(samples_s: list[float]) -> dict[str, float]:
    """Return p50/p99/mean of durations given in seconds, in milliseconds."""
    a = np.asarray(samples_s) * 1000.0
    return {
        'p50_ms': float(np.percentile(a, 50)),
        'p99_ms': float(np.percentile(a, 99)),
        'mean_ms': float(a.mean()),
        'n': int(a.size),
    }


def rss_anon_mb() -> float:
    """Anonymous resident memory of this process (excludes file-backed memory maps), MiB."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('RssAnon:'):
                return int(line.split()[1]) / 1024.0
    return float('nan')


def machine() -> dict[str, Any]:
    return {
        'python': sys.version.split()[0],
        'torch': torch.__version__,
        'cpu_count': os.cpu_count(),
        'torch_threads': torch.get_num_threads(),
        'machine': platform.machine(),
        'cuda': torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def report(name: str, result: dict[str, Any]) -> None:
    print(json.dumps({'benchmark': name, 'machine': machine(), **result}, indent=2))


# The demo's model (demo._RECIPE) and rate (15 Hz camera, dt 0.066 s), random weights.
DEMO_MODEL = {
    'image_pool': 'spatial_softmax',
    'keypoint_beta': 5.0,
    'conv_channels': (32, 64),
    'conv_norm': 'group',
    'residual': True,
    'goal_head': True,
}
DEMO_IMAGE_HW = (48, 64)
DEMO_DT = 0.066


def make_demo_checkpoint(out_dir: Path) -> Path:
    """Write a random-weight checkpoint of the demo's model size and rate."""
    from kinova_policy_ros.testing.synthetic import make_random_checkpoint

    return make_random_checkpoint(
        out_dir, image_hw=DEMO_IMAGE_HW, dt=DEMO_DT, **DEMO_MODEL  # type: ignore[arg-type]
    )


def rss_mb(pid: int) -> float:
    """Resident memory (``VmRSS``) of process ``pid``, MiB (nan when it is gone)."""
    try:
        with open(f'/proc/{pid}/status') as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float('nan')


def write_csv(path: Path, rows: list[dict[str, float]]) -> None:
    """Write the series as CSV, atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows({k: f'{v:.6g}' for k, v in row.items()} for row in rows)
    atomic_write(path, lambda tmp: tmp.write_text(buf.getvalue()))


def write_json(path: Path, result: dict[str, Any]) -> None:
    """Write ``result`` as JSON (nan as null), atomically."""
    text = json.dumps(finite(result), indent=1, allow_nan=False)
    atomic_write(path, lambda tmp: tmp.write_text(text + '\n'))


def finite(value: Any) -> Any:
    """Return ``value`` with every non-finite float (nested too) replaced by None."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def growth_per_hour(t_s: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Slope (per hour) and residual std of a linear fit of the second half of ``y(t)``."""
    keep = (t_s >= t_s[-1] / 2.0) & np.isfinite(y)
    if keep.sum() < 3:
        return float('nan'), float('nan')
    slope, icept = np.polyfit(t_s[keep], y[keep], 1)
    residual = y[keep] - (slope * t_s[keep] + icept)
    return float(slope * 3600.0), float(residual.std())


def stop_on_signals(stop: threading.Event) -> None:
    """Make SIGINT and SIGTERM set ``stop`` (a clean end instead of KeyboardInterrupt)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: stop.set())


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (s; nan when it is gone)."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            fields = f.read().rsplit(')', 1)[1].split()
    except OSError:
        return float('nan')
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def percentile_ms(ages_ns: list[int], q: float) -> float:
    """Return percentile ``q`` of durations in ns, in ms (nan when there are none)."""
    return float(np.percentile(np.array(ages_ns) * 1e-6, q)) if ages_ns else float('nan')
