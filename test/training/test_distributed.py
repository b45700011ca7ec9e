"""The process's place in a run: rank, device, process group (single-process paths)."""

from kinova_policy_ros.core.errors import KinovaPolicyError
from kinova_policy_ros.training import distributed
from kinova_policy_ros.training.distributed import (
    barrier,
    device_kind,
    Dist,
    init_distributed,
    process_group_active,
    training_device,
)
import pytest
import torch


def test_only_rank_zero_is_the_main_process():
    assert Dist().main
    assert Dist(rank=0, world=4).main
    assert not Dist(rank=1, world=4, local_rank=1).main


def test_a_plain_run_is_one_process(monkeypatch):
    monkeypatch.delenv('WORLD_SIZE', raising=False)
    assert init_distributed('cpu') == Dist(0, 1, 0)
    monkeypatch.setenv('WORLD_SIZE', '1')
    assert init_distributed('cuda') == Dist(0, 1, 0)
    assert not process_group_active()


def test_torchrun_joins_the_group_with_the_backend_of_the_device(monkeypatch):
    calls: list[str] = []
    monkeypatch.setenv('WORLD_SIZE', '2')
    monkeypatch.setenv('LOCAL_RANK', '1')
    monkeypatch.setattr(
        distributed.dist, 'init_process_group', lambda backend: calls.append(backend)
    )
    monkeypatch.setattr(distributed.dist, 'get_rank', lambda: 1)
    monkeypatch.setattr(distributed.dist, 'get_world_size', lambda: 2)
    assert init_distributed('cpu') == Dist(rank=1, world=2, local_rank=1)
    assert init_distributed('cuda') == Dist(rank=1, world=2, local_rank=1)
    assert calls == ['gloo', 'nccl']


def test_device_kind(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert [device_kind(r) for r in ('auto', 'cpu', 'cuda', 'cuda:1')] == [
        'cpu', 'cpu', 'cuda', 'cuda'
    ]
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert [device_kind(r) for r in ('auto', 'cpu')] == ['cuda', 'cpu']


def test_training_device_always_indexes_cuda(monkeypatch):
    # torch.cuda.set_device rejects a bare 'cuda': found on an H200, where the trainer broke
    assert training_device('cpu', Dist()) == torch.device('cpu')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert training_device('auto', Dist()) == torch.device('cpu')
    with pytest.raises(KinovaPolicyError, match=r"train\.device is 'cuda' but CUDA is not"):
        training_device('cuda', Dist())
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'current_device', lambda: 2)
    assert training_device('cuda', Dist()) == torch.device('cuda', 2)
    assert training_device('auto', Dist()) == torch.device('cuda', 2)
    assert training_device('cuda:1', Dist()) == torch.device('cuda', 1)
    assert training_device('cuda', Dist(rank=3, world=4, local_rank=3)) == torch.device('cuda', 3)


def test_barrier_waits_only_in_a_multi_process_run(monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(distributed.dist, 'barrier', lambda: calls.append(1))
    barrier(Dist())
    assert calls == []
    barrier(Dist(rank=0, world=2))
    assert calls == [1]


def test_end_torchrun_worker_leaves_the_group_then_exits_with_the_code(monkeypatch):
    events: list[object] = []
    monkeypatch.setattr(
        distributed.dist, 'destroy_process_group', lambda: events.append('destroy')
    )
    monkeypatch.setattr(distributed.os, '_exit', lambda code: events.append(code))
    distributed.end_torchrun_worker(3)
    assert events == ['destroy', 3]
