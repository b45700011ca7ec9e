"""
This process's place in a training run: the process group (under torchrun) and the device.

A plain ``python -m kinova_policy_ros.training.train`` is a run of one process (rank 0 of 1);
under ``torchrun --nproc_per_node N`` each process joins the group (NCCL on CUDA, gloo on CPU)
and trains on the GPU of its local rank.
"""

from dataclasses import dataclass
import os
import sys

from kinova_policy_ros.core.errors import KinovaPolicyError
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    """This process's place in a (possibly single-process) distributed run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process writes files and prints (rank 0)."""
        return self.rank == 0


def init_distributed(device_kind: str) -> Dist:
    """Join the process group when started by torchrun (``WORLD_SIZE`` > 1)."""
    world = int(os.environ.get('WORLD_SIZE', '1'))
    if world <= 1:
        return Dist()
    backend = 'nccl' if device_kind == 'cuda' else 'gloo'
    dist.init_process_group(backend=backend)
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get('LOCAL_RANK', '0')))


def device_kind(requested: str) -> str:
    """Return ``'cuda'`` or ``'cpu'`` for ``train.device`` (auto, cpu, cuda or cuda:N)."""
    cuda = requested.startswith('cuda') or (requested == 'auto' and torch.cuda.is_available())
    return 'cuda' if cuda else 'cpu'


def training_device(requested: str, d: Dist) -> torch.device:
    """
    Resolve ``train.device`` (auto, cpu, cuda or cuda:N) to the device this process trains on.

    A CUDA device always gets an index (``torch.cuda.set_device`` rejects a bare ``cuda``):
    the local rank under torchrun, the one named, else the current device.
    """
    if device_kind(requested) == 'cpu':
        return torch.device('cpu')
    if not torch.cuda.is_available():
        raise KinovaPolicyError(f'train.device is {requested!r} but CUDA is not available')
    if d.world > 1:
        return torch.device('cuda', d.local_rank)
    index = torch.device(requested if requested != 'auto' else 'cuda').index
    return torch.device('cuda', torch.cuda.current_device() if index is None else index)


def barrier(d: Dist) -> None:
    """Wait for every process of a multi-process run (nothing to wait for in a single one)."""
    if d.world > 1:
        dist.barrier()


def process_group_active() -> bool:
    """Whether this process belongs to an initialized process group (it was torchrun-started)."""
    return dist.is_available() and dist.is_initialized()


def end_torchrun_worker(code: int) -> None:
    """
    Leave the process group and end this torchrun worker now, skipping interpreter teardown.

    With gloo, the teardown can deadlock: the last reference to the DDP reducer is dropped while
    the interpreter holds the GIL, the process group's destructor joins its worker thread, and
    that thread is still releasing a finished collective whose thread-local state needs the GIL
    (seen about once in 15 runs of a 2-process job, right after the last step). Everything the
    run produced is on disk by now (checkpoints are written atomically); only the streams are
    flushed. Call only after the process group existed, i.e. in a process torchrun started.
    """
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
