"""Small helpers shared by the benchmarks (timing statistics, memory, JSON output)."""

import json
import os
import platform
import sys
from typing import Any

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
